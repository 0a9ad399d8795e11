"""Reading image files (`bench.images.read_image`, used for `sources: {kind: images}`): upright by EXIF, alpha onto
white, the centre square resized to the generator's size; and the one home of the uint8 <-> [-1, 1] conversions."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench.images import from_uint8, read_image, read_png_folder, save_pngs, to_uint8

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def bands(width, height, colours, vertical=True):
    """An image cut into equal bands of `colours`, left to right (`vertical`) or top to bottom."""
    array = np.zeros((height, width, 3), np.uint8)
    n = len(colours)
    for i, colour in enumerate(colours):
        if vertical:
            array[:, i * width // n:(i + 1) * width // n] = colour
        else:
            array[i * height // n:(i + 1) * height // n] = colour
    return Image.fromarray(array)


def pixels(tensor):
    return to_uint8(tensor.unsqueeze(0))[0].astype(int)


@pytest.mark.parametrize("vertical", [True, False])
def test_a_non_square_photo_gives_its_centre_square_not_a_squashed_copy(tmp_path, vertical):
    """Red | green | red, three equal bands: squashing to a square would keep a third of red on each side; the centre
    square is the green band alone (at scale 1 exactly; downscaled, LANCZOS reads a little red across the crop's edge
    into the outermost pixels, as resizing the whole photo and then cropping does)."""
    image = bands(60, 20, [RED, GREEN, RED]) if vertical else bands(20, 60, [RED, GREEN, RED], vertical=False)
    image.save(tmp_path / "wide.png")
    assert (pixels(read_image(tmp_path / "wide.png", 20)) == GREEN).all()
    small = np.abs(pixels(read_image(tmp_path / "wide.png", 10)) - GREEN)
    inner = small[:, 1:-1] if vertical else small[1:-1]
    assert inner.max() <= 2 and small.max() < 30, small  # a squashed copy: 255 off over a third of the pixels


def test_the_short_side_is_resized_then_the_centre_cropped(tmp_path):
    """As rosinality's projector's Resize(size) + CenterCrop(size): a 90 x 30 photo at 10 px is the whole photo
    resized to 30 x 10 with its middle 10 columns kept (to rounding), not the photo squashed to 10 x 10."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (30, 90, 3), dtype=np.uint8))
    image.save(tmp_path / "noise.png")
    out = pixels(read_image(tmp_path / "noise.png", 10))
    resized_then_cropped = np.asarray(image.resize((30, 10), Image.LANCZOS))[:, 10:20].astype(int)
    squashed = np.asarray(image.resize((10, 10), Image.LANCZOS)).astype(int)
    assert np.abs(out - resized_then_cropped).max() <= 1
    assert np.abs(out - squashed).mean() > 10  # (noise averaged down: both near grey, far apart all the same)


def test_an_exif_rotated_jpeg_comes_out_upright(tmp_path):
    """A camera's portrait photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view): upright it is
    red above blue; read without its orientation it would be red left of blue."""
    upright = bands(20, 40, [RED, BLUE], vertical=False)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote: 40 x 20
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    out = pixels(read_image(tmp_path / "portrait.jpg", 16))
    top, bottom = out[:6].reshape(-1, 3).mean(0), out[-6:].reshape(-1, 3).mean(0)
    assert np.abs(top - RED).max() < 20 and np.abs(bottom - BLUE).max() < 20, (top, bottom)


def test_transparent_pixels_are_white_not_black(tmp_path):
    array = np.zeros((8, 8, 4), np.uint8)
    array[..., 0] = 255  # red under the alpha
    array[:, :4, 3] = 255  # left half opaque, right half transparent
    Image.fromarray(array, "RGBA").save(tmp_path / "cut.png")
    out = pixels(read_image(tmp_path / "cut.png"))
    assert (out[:, :4] == RED).all() and (out[:, 4:] == (255, 255, 255)).all()


def test_a_photo_larger_than_the_generator_is_resized_for_the_sources(tmp_path):
    """`sources: {kind: images}` with a 200 x 120 photo and a 32 px generator: the batch holds the photo's centre
    square at 32 px, and the encoder inverts that."""
    from bench.backbone_set import BackboneSet
    from bench.sources import source_batches
    from bench.suite import ImageSources
    from methods.inversion import latents_inversion
    from test_inversion import FakeEncoder
    from test_styleclip import tiny_generator

    folder = tmp_path / "photos"
    folder.mkdir()
    bands(200, 120, [RED] + [GREEN] * 8 + [RED]).save(folder / "big.png")  # red outside the centre 120 x 120
    bands(30, 30, [BLUE]).save(folder / "small.png")  # smaller than the generator: enlarged
    g = tiny_generator(size=32)
    encoder = FakeEncoder(g.n_latent, g.style_dim)
    backbones = BackboneSet({"generator": g, "encoder": encoder})
    spec = ImageSources(kind="images", path=str(folder), inversion="encoder", batch_size=4)
    [batch] = source_batches(spec, backbones)
    assert batch.images.shape == (2, 3, 32, 32)
    assert np.abs(pixels(batch.images[0]) - GREEN).max() <= 2
    assert np.abs(pixels(batch.images[1]) - BLUE).max() <= 2
    assert torch.equal(batch.latents, encoder(batch.images)) and latents_inversion(batch) == "encoder"


def test_uint8_conversions_round_trip(tmp_path):
    images = torch.rand(2, 3, 5, 7) * 2 - 1
    array = to_uint8(images)
    assert array.shape == (2, 5, 7, 3) and array.dtype == np.uint8
    back = from_uint8(array)
    assert back.shape == (2, 3, 5, 7) and (back - images).abs().max() <= 1 / 127.5
    assert torch.equal(from_uint8(array[0]), back[0])
    save_pngs(back, tmp_path)
    indices, read = read_png_folder(tmp_path)
    assert indices == [0, 1] and torch.equal(read, back)
    assert torch.equal(read_image(tmp_path / "000001.png"), back[1])
