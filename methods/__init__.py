"""Editing methods, one file per family. Register a new method with one line in `METHODS` below."""

from bench.registry import Registry

METHODS = Registry("method")
METHODS.register("source", "methods.source:SourceBaseline",
                 "unedited source images: the floor every method is compared against")
METHODS.register("nada", "methods.nada:StyleGANNada",
                 "StyleGAN-NADA: CLIP-guided generator fine-tuning (directional/global loss, adaptive layers, mining)")
METHODS.register("styleclip_optimization", "methods.styleclip_optimization:StyleClipOptimization",
                 "StyleCLIP latent optimisation: Adam on W+ (or S) against CLIP + L2 (+ identity), 300 steps")
METHODS.register("styleclip_mapper", "methods.styleclip_mapper:StyleClipMapper",
                 "StyleCLIP latent mapper: per-edit LevelsMapper trained with Ranger, w + 0.1·M(w) at inference")
METHODS.register("styleclip_global", "methods.styleclip_global:StyleClipGlobal",
                 "StyleCLIP global directions: cached S-channel relevance, s += α·Δs from the text direction")
METHODS.register("tedigan_optimization", "methods.tedigan:TediganOptimization",
                 "TediGAN CLIP-guided optimisation: encoder inversion + W+ Adam (pixel, perceptual, encoder, CLIP)")
METHODS.register("tedigan_text2latent", "methods.tedigan:TediganText2Latent",
                 "TediGAN-style learned CLIP-text → W+ mapping (stand-in), edit by latent difference or mixing")
METHODS.register("synthface_oracle", "methods.synthface_oracle:SynthfaceOracle",
                 "synthetic world only: the edit's expected attribute written into the generator's parameter-linear "
                 "W (no text): what the generator draws for the exact edit")
