"""FID/KID reference features on disk (a damaged cache file is computed again) and clean-fid's Inception weights
(where they are expected, the error offline, a local file by `inception_path`)."""

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.errors import BenchError, CheckpointError
from metrics import METRICS
from metrics.base import EditBatch, ScoringContext

N = 12


class CountingExtractor:
    """Test features: per-channel means and standard deviations; counts the images it sees."""

    def __init__(self):
        self.images = 0

    def __call__(self, images):
        self.images += len(images)
        flat = images.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1).double().numpy()

    def fingerprint(self):
        return "counting-test-extractor"


def _fid(metric, source, edited):
    metric.reset()
    metric.update(EditBatch(source, edited, "a face", "a face", {}))
    return float(metric.compute()["fid"])


def test_a_damaged_reference_cache_file_is_computed_again(tmp_path, caplog):
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(N, 3, 8, 8, generator=generator) * 2 - 1
    edited = (source + 0.3 * torch.rand(N, 3, 8, 8, generator=generator)).clamp(-1, 1)
    extractor = CountingExtractor()
    fid = METRICS.get("fid")(ScoringContext(judges={}), feature_extractor=extractor, cache_dir=str(tmp_path))
    first = _fid(fid, source, edited)
    (cached,) = tmp_path.glob("*.npy")
    assert extractor.images == 2 * N  # edited + the reference (the sources)
    assert _fid(fid, source, edited) == first and extractor.images == 3 * N  # the reference came from the file
    good = cached.read_bytes()
    for damaged in (good[:len(good) - 8], good[:20], b""):  # a write cut short, a header cut short, an empty file
        cached.write_bytes(damaged)
        before = extractor.images
        assert _fid(fid, source, edited) == first  # not an error: the reference is computed again
        assert extractor.images == before + 2 * N
        assert cached.read_bytes() == good  # and stored again, whole
        assert f"cache file {cached} is damaged" in caplog.text
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.tmp"))


def test_array_cache_files_round_trip_and_refuse_foreign_ones(tmp_path):
    from bench.cachefile import load_array_or_none, save_array_atomic

    path = tmp_path / "sub" / "a.npy"
    assert load_array_or_none(path) is None  # missing
    array = np.arange(12, dtype=np.float64).reshape(3, 4)
    save_array_atomic(array, path)
    assert np.array_equal(load_array_or_none(path), array)
    with open(path, "wb") as handle:  # an .npz archive under the name: not one array
        np.savez(handle, a=array)
    assert load_array_or_none(path) is None and not path.exists()
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # pickled objects are never loaded
    assert load_array_or_none(path) is None and not path.exists()
    with pytest.raises(ValueError):  # nor written
        save_array_atomic(np.array([{"a": 1}], dtype=object), path)
    assert not list(path.parent.iterdir())  # no temp file left by the failed write


# ----------------------------------------------------------------------------------- clean-fid's Inception weights
def test_clean_fid_inception_is_expected_where_clean_fid_downloads_it(monkeypatch):
    import cleanfid.inception_torchscript

    from metrics.fid import INCEPTION_URL, cleanfid_inception_file

    asked = []

    def no_network(fpath="./"):
        asked.append(Path(fpath) / "inception-2015-12-05.pt")
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cleanfid.inception_torchscript, "check_download_inception", no_network)
    with pytest.raises(urllib.error.URLError):
        from cleanfid.features import build_feature_extractor

        build_feature_extractor("clean", device=torch.device("cpu"), use_dataparallel=False)
    assert asked == [cleanfid_inception_file()]  # the path clean-fid looks in, as the error names it
    import cleanfid.downloads_helper

    assert cleanfid.downloads_helper.inception_url == INCEPTION_URL


def test_offline_inception_error_names_the_file_the_url_and_the_way_out(monkeypatch, tmp_path):
    import cleanfid.inception_torchscript

    import metrics.fid
    from metrics.fid import INCEPTION_URL

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = tmp_path / "inception-2015-12-05.pt"  # where this machine's clean-fid would look (none there)
    monkeypatch.setattr(metrics.fid, "cleanfid_inception_file", lambda: expected)

    def no_network(fpath="./"):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cleanfid.inception_torchscript, "check_download_inception", no_network)
    fid = METRICS.get("fid")(ScoringContext(judges={}), features="inception", cache_dir=str(tmp_path / "c"))
    with pytest.raises(CheckpointError) as caught:
        fid.update(EditBatch(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), "a face", "a face", {}))
    message = str(caught.value)
    assert "\n" not in message
    for part in (f"{expected} is missing", "URLError", "HF_HUB_OFFLINE=1 is set", f"Download {INCEPTION_URL} to "
                 f"{expected}", "inception_path", "features: clip"):
        assert part in message, (part, message)
    # a cut-off download left in place by clean-fid: said so, with the way to fetch it again
    expected.write_bytes(b"cut off")
    with pytest.raises(CheckpointError, match=f"{expected} exists but cannot be read.*delete it"):
        fid.update(EditBatch(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), "a face", "a face", {}))


class _Layers(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)).repeat(1, 683)[:, :2048]  # clean-fid reads [N, 2048] pool features


class _TinyInception(nn.Module):
    """A TorchScript file shaped like clean-fid's: a `layers` submodule giving the pool features."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_inception_path_loads_a_local_file_and_keys_the_cache_by_its_content(tmp_path):
    from metrics.fid import InceptionFeatures

    path = tmp_path / "my-inception.pt"
    torch.jit.save(torch.jit.script(_TinyInception()), str(path))
    features = InceptionFeatures("cpu", 4, path=str(path))
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    feats = features(images)
    assert feats.shape == (3, 2048)
    # clean-fid's forward: 299 x 299 uint8-valued pixels, then (x - 128) / 128
    expected = ((features.preprocess(images) - 128) / 128).mean(dim=(2, 3))
    assert np.allclose(feats[:, :3], expected.numpy(), atol=1e-5)
    assert features.fingerprint() != InceptionFeatures("cpu", 4).fingerprint()
    torch.jit.save(torch.jit.script(nn.Sequential(_Layers())), str(path))  # other weights at the same path
    assert InceptionFeatures("cpu", 4, path=str(path)).fingerprint() != features.fingerprint()

    context = ScoringContext(judges={})
    with pytest.raises(CheckpointError, match=f"not found: {tmp_path / 'missing.pt'}.*inception-2015-12-05.pt"):
        METRICS.get("kid")(context, features="inception", inception_path=str(tmp_path / "missing.pt"))
    (tmp_path / "foreign.pt").write_bytes(b"no torchscript")
    foreign = InceptionFeatures("cpu", 4, path=str(tmp_path / "foreign.pt"))
    with pytest.raises(CheckpointError, match="cannot read the Inception weights inception_path .*foreign.pt"):
        foreign(images)
    with pytest.raises(BenchError, match="inception_path .* is for features: inception"):
        METRICS.get("fid")(context, features="clip", inception_path=str(path))


def test_the_suite_checks_know_fid_and_kid_parameters():
    from bench.suite_checks import metric_problem

    assert metric_problem("fid", {"inception_path": "/models/inception.pt", "features": "inception"}) is None
    assert metric_problem("kid", {"inception_path": "/m.pt", "num_subsets": 10, "reference": "sources"}) is None
    assert metric_problem("kid_n", {"inception_path": "/m.pt"}) is None
    for name in ("fid", "kid"):  # a misspelt parameter is named, with the valid ones (it was accepted unseen)
        problem = metric_problem(name, {"inceptoin_path": "/m.pt"})
        assert "unknown parameter(s) 'inceptoin_path'" in problem and "inception_path" in problem
    assert "num_subsets" in metric_problem("kid", {"x": 1}) and "num_subsets" not in metric_problem("fid", {"x": 1})
