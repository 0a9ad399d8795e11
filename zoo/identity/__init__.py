"""Identity networks: IR-SE50 ArcFace for the identity loss (StyleCLIP / pSp / e4e) and insightface ONNX
recognizers for the identity metric."""

from zoo.identity.irse50 import (IRSE50, IdentityLoss, identity_crop, identity_crop_name, load_irse50,
                                 stylegan_face_crop)
from zoo.identity.onnx_recognizer import OnnxRecognizer, load_onnx_recognizer

__all__ = ["IRSE50", "IdentityLoss", "identity_crop", "identity_crop_name", "load_irse50", "stylegan_face_crop",
           "OnnxRecognizer", "load_onnx_recognizer"]
