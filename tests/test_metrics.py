"""Metric maths against NumPy/SciPy references, metric behaviour on real MNIST, evaluators and the cache."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import torch
import torch.nn.functional as F

from atelier.errors import DataError, DownloadError
from atelier.metrics import maths
from atelier.metrics.evaluators import EVALUATORS, load_evaluator
from atelier.metrics.inception import FIDInceptionV3, preprocess
from atelier.weights import WEIGHTS, NamedWeights, WeightsError
from conftest import DATA_REASON, mnist_available

needs_mnist = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Samples of one correlated Gaussian per (d, shift); ``seed`` picks the draw, not the distribution."""
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64) / d**0.5
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) @ mix + shift


# ---------------------------------------------------------------- maths vs NumPy / SciPy
def test_fid_matches_scipy_reference():
    a, b = _gaussian(400, 12, 0), _gaussian(300, 12, 1, shift=0.3)
    x, y = a.numpy(), b.numpy()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert maths.fid(a, b) == pytest.approx(ref, rel=1e-8)
    assert maths.fid(a, a) == pytest.approx(0.0, abs=1e-9)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m = len(x)
    return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_matches_numpy_reference():
    a, b = _gaussian(200, 8, 2), _gaussian(200, 8, 3, shift=0.2)
    # One subset holding every sample: the order torchmetrics draws does not change MMD^2.
    mean, std = maths.kid(a, b, subsets=1, subset_size=200)
    assert mean == pytest.approx(_mmd2_unbiased(a.numpy(), b.numpy()), rel=1e-9)
    assert std == 0.0


def test_kid_is_unbiased_for_two_samples_of_one_distribution():
    # The biased estimator is > 0 for every draw; the unbiased one averages to 0 within its error.
    values = [maths.kid(_gaussian(100, 8, s), _gaussian(100, 8, 1000 + s), subsets=1, subset_size=100)[0]
              for s in range(40)]
    mean, sem = np.mean(values), np.std(values) / np.sqrt(len(values))
    assert abs(mean) < 3 * sem
    assert min(values) < 0 < max(values)


def test_inception_score_matches_numpy_reference():
    logits = _gaussian(300, 10, 4) * 3
    p = torch.softmax(logits, 1).numpy()
    ref = np.exp((p * (np.log(p) - np.log(p.mean(0, keepdims=True)))).sum(1).mean())
    assert maths.inception_score(logits, splits=1)[0] == pytest.approx(ref, rel=1e-9)
    # Confident, balanced predictions over K classes give IS = K; a single class gives 1.
    confident = torch.eye(10).repeat(30, 1) * 50
    assert maths.inception_score(confident.double(), splits=1)[0] == pytest.approx(10.0, rel=1e-6)
    assert maths.inception_score(confident[::10].double(), splits=3)[0] == pytest.approx(1.0, rel=1e-6)


def test_precision_recall_matches_scipy_reference():
    real, fake = _gaussian(150, 6, 5).float(), _gaussian(120, 6, 6, shift=0.7).float()
    x, y = real.double().numpy(), fake.double().numpy()

    def radii(z):
        return np.sort(scipy.spatial.distance.cdist(z, z), axis=1)[:, 3]  # column 0 is the point itself

    precision = (scipy.spatial.distance.cdist(y, x) <= radii(x)[None, :]).any(1).mean()
    recall = (scipy.spatial.distance.cdist(x, y) <= radii(y)[None, :]).any(1).mean()
    p, r = maths.precision_recall(real, fake, k=3, block=64)
    assert (p, r) == pytest.approx((precision, recall), abs=1.5 / 120)  # a boundary point may round either way
    assert 0.0 < p < 1.0 and 0.0 < r < 1.0


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="same D"):
        maths.fid(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="more than 3"):
        maths.precision_recall(torch.randn(3, 2), torch.randn(10, 2))


# ---------------------------------------------------------------- behaviour on real digits
@pytest.fixture(scope="module")
def digits():
    return load_evaluator("digits")


@pytest.fixture(scope="module")
def mnist_test() -> torch.Tensor:
    from atelier.data import open_source

    return open_source("mnist:test", limit=2000).images


@pytest.fixture(scope="module")
def test_features(digits, mnist_test):
    return digits(mnist_test)


@needs_mnist
def test_shipped_digits_evaluator_is_accurate(digits, mnist_test, test_features):
    from atelier.data import open_source

    labels = open_source("mnist:test", limit=2000).labels
    assert (test_features.logits.argmax(1) == labels).double().mean() > 0.99
    assert digits.info["test_accuracy"] >= 0.993 and len(digits.sha256) == 64
    assert test_features.features.shape == (2000, 128)


@needs_mnist
def test_fid_is_zero_against_itself_and_grows_with_noise_and_blur(digits, mnist_test, test_features):
    ref = test_features.features[:1000]
    clean = mnist_test[1000:1500]
    assert maths.fid(ref, ref) == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(clean.shape, generator=g)
    noisy = [maths.fid(ref, digits((clean.float() + s * noise).clamp(0, 255).round().to(torch.uint8)).features)
             for s in (0, 24, 64, 128)]
    assert all(a < b for a, b in zip(noisy, noisy[1:], strict=False)), noisy

    def blur(x: torch.Tensor, size: int) -> torch.Tensor:  # a box blur of size x size pixels
        y = F.avg_pool2d(x.float(), size, stride=1, padding=size // 2, count_include_pad=False)
        return y.round().to(torch.uint8)

    blurred = [maths.fid(ref, digits(blur(clean, k)).features) for k in (1, 3, 5, 7)]
    assert all(a < b for a, b in zip(blurred, blurred[1:], strict=False)), blurred
    assert noisy[0] < blurred[-1]


@needs_mnist
def test_kid_of_two_halves_is_near_zero_and_far_below_a_degraded_set(test_features, digits, mnist_test):
    a, b = test_features.features[:1000], test_features.features[1000:]
    halves, std = maths.kid(a, b, subsets=30, subset_size=300)
    g = torch.Generator().manual_seed(1)
    noise = 48 * torch.randn(500, 1, 28, 28, generator=g)
    noisy = digits((mnist_test[1000:1500].float() + noise).clamp(0, 255).to(torch.uint8))
    degraded = maths.kid(a, noisy.features, subsets=30, subset_size=300)[0]
    assert abs(halves) < 0.02 * degraded and abs(halves) < 2 * std


@needs_mnist
def test_inception_score_of_real_digits_is_close_to_ten(test_features):
    score, _ = maths.inception_score(test_features.logits, splits=10)
    assert 9.3 < score <= 10.0


@needs_mnist
def test_precision_recall_real_vs_real_high_and_mode_collapse_has_no_recall(digits, test_features):
    from atelier.data import open_source

    train = digits(open_source("mnist:train", limit=1000).images).features
    real = test_features.features[:1000]
    p, r = maths.precision_recall(real, train)
    assert p > 0.7 and r > 0.7
    collapsed = real[:1].repeat(1000, 1)  # one real digit, repeated: all precision, no recall
    p, r = maths.precision_recall(real, collapsed)
    assert r < 0.01 and p == 1.0
    labels = open_source("mnist:test", limit=2000).labels
    ones = test_features.features[1000:][labels[1000:] == 1]  # a single class: recall at most ~1/10
    assert maths.precision_recall(real, ones)[1] < 0.2


@pytest.fixture(scope="module")
def ref_npz(tmp_path_factory, mnist_test) -> str:
    """300 real test digits as an .npz reference set (a named split would mean 10,000 images per test)."""
    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    np.savez(path, images=mnist_test[1500:1800].numpy()[:, 0])
    return str(path)


@needs_mnist
def test_numbers_are_reproducible(digits, mnist_test, ref_npz):
    from atelier.metrics import evaluate_images

    kwargs = {"ref": ref_npz, "evaluator": digits, "metrics": ["kid", "is"], "seed": 3}
    small = mnist_test[:200]
    first, second = evaluate_images(small, **kwargs), evaluate_images(small, **kwargs)
    assert first == second
    other = evaluate_images(small, **{**kwargs, "seed": 4})
    assert other[0]["value"] != first[0]["value"]  # the seed does pick the KID subsets


# ---------------------------------------------------------------- evaluators refuse what they cannot read
def test_digits_evaluator_refuses_colour_and_wrong_size(digits):
    with pytest.raises(DataError, match=r"3-channel images; the digits evaluator reads grayscale"):
        digits(torch.zeros(4, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"32x32 images; the digits evaluator reads 28x28"):
        digits(torch.zeros(4, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        digits(torch.zeros(4, 1, 28, 28))


@needs_mnist
def test_folder_of_photos_is_refused_by_digits_but_gray_digits_are_read(tmp_path, digits):
    from PIL import Image

    from atelier.metrics import read_images

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    with pytest.raises(DataError, match=r"3-channel images; the digits evaluator"):
        read_images(str(photos), digits)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).convert("RGB").save(gray / f"{i}.png")
    got = read_images(str(gray), digits)
    assert got.images.shape == (3, 1, 28, 28)


def test_unknown_evaluator_and_missing_digit_weights(tmp_path):
    with pytest.raises(DataError, match="unknown evaluator 'lenet'"):
        load_evaluator("lenet")
    with pytest.raises(WeightsError, match="train_evaluator.py digits"):
        load_evaluator("digits", weights=tmp_path / "nope.safetensors")


# ---------------------------------------------------------------- the FID Inception (random weights)
def test_inception_structure_matches_the_published_state_dict_layout():
    net = FIDInceptionV3()
    state = net.state_dict()
    # pytorch-fid's pt_inception-2015-12-05 file holds 566 entries (BatchNorm counters included).
    assert len(state) == 566
    assert state["fc.weight"].shape == (1008, 2048)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"


def test_inception_forward_shapes_on_digits():
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    with torch.no_grad():
        feats, logits = net.forward_features(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert (feats >= 0).all()  # a mean of ReLU outputs


def test_inception_preprocessing_range_channels_and_antialiasing():
    x = torch.tensor([0, 255], dtype=torch.uint8).repeat(14).reshape(1, 1, 1, 28).expand(1, 1, 28, 28)
    y = preprocess(x.contiguous())
    assert y.shape == (1, 3, 299, 299)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])  # grayscale -> 3 equal channels
    assert y.min() >= -1.0 and y.max() <= 1.0
    assert preprocess(torch.zeros(1, 3, 299, 299, dtype=torch.uint8)).eq(-1).all()
    assert preprocess(torch.full((1, 3, 299, 299), 255, dtype=torch.uint8)).eq(1).all()
    # 1-pixel stripes at 3x the input size: antialiased downsampling averages them to mid-grey, while
    # point sampling would alias them into full-contrast stripes.
    stripes = torch.tensor([0, 255], dtype=torch.uint8).repeat(449)[:897].reshape(1, 1, 1, 897).expand(1, 3, 897, 897)
    down = preprocess(stripes.contiguous())
    assert down.std() < 0.2
    aliased = F.interpolate(stripes.float(), size=(299, 299), mode="bilinear", align_corners=False) / 127.5 - 1
    assert aliased.std() > 0.9
    with pytest.raises(TypeError, match="uint8"):
        preprocess(torch.zeros(1, 3, 8, 8))


def test_inception_weights_load_from_a_local_file_and_say_when_missing(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.delenv("ATELIER_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match=r"pytorch-fid/releases/download/fid_weights.*--inception-weights"):
        load_evaluator("inception")
    torch.manual_seed(0)
    path = tmp_path / "random-inception.safetensors"
    save_file(FIDInceptionV3().state_dict(), str(path))
    with pytest.warns(UserWarning, match="not the official FID Inception file"):
        ev = load_evaluator("inception", weights=path)
    assert ev.name == "inception" and ev.protocol()["resize"] == EVALUATORS["inception"].resize
    bad = tmp_path / "digits-as-inception.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(WeightsError, match="does not hold FID Inception"):
        with pytest.warns(UserWarning):
            load_evaluator("inception", weights=bad)


def test_inception_weights_download_checks_sha256(server, online, monkeypatch, tmp_path):  # noqa: F811
    import hashlib

    root, url = server
    payload = b"not really inception weights"
    (root / "pt_inception-fake.pth").write_bytes(payload)
    entry = WEIGHTS["inception-fid"]
    fake = NamedWeights(entry.name, "pt_inception-fake.pth", f"{url}/pt_inception-fake.pth",
                        hashlib.sha256(payload).hexdigest(), entry.description)
    monkeypatch.setitem(WEIGHTS, "inception-fid", fake)
    monkeypatch.setattr("atelier.metrics.evaluators.INCEPTION_WEIGHTS", fake)
    # Downloaded and checked, then refused as weights (it is a fake): the download path works.
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_evaluator("inception", download=True)
    cached = list((tmp_path.parent).glob("**/weights/pt_inception-fake.pth"))
    assert cached and cached[0].read_bytes() == payload
    wrong = NamedWeights(entry.name, "pt_inception-wrong.pth", f"{url}/pt_inception-fake.pth", "0" * 64,
                         entry.description)
    monkeypatch.setitem(WEIGHTS, "inception-fid", wrong)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_evaluator("inception", download=True)
    assert not list((tmp_path.parent).glob("**/weights/pt_inception-wrong.pth"))


def test_official_inception_entry_is_registered():
    entry = WEIGHTS["inception-fid"]
    assert entry.url.endswith("pt_inception-2015-12-05-6726825d.pth")
    assert entry.sha256 is not None and entry.sha256.startswith("6726825d")


# ---------------------------------------------------------------- the reference-feature cache
@needs_mnist
def test_reference_features_are_cached_per_evaluator(digits, tmp_path, monkeypatch):
    from atelier.metrics import reference
    from atelier.metrics.evaluators import Evaluator

    real_read = reference.read_images
    calls = []

    def small_read(spec, evaluator, n=None, seed=0, like=None):
        calls.append(spec)
        return real_read(spec, evaluator, n=300, seed=seed, like=like)  # keep the test fast

    monkeypatch.setattr(reference, "read_images", small_read)
    f1, info1 = reference.reference_features("mnist:test", digits)
    f2, info2 = reference.reference_features("mnist:test", digits)
    assert (info1["cached"], info2["cached"]) == (False, True) and len(calls) == 1
    assert torch.equal(f1, f2) and info2["cache_file"] == info1["cache_file"]
    # Another weights file (other sha256) never reuses those features.
    other = Evaluator(digits.spec, digits.network, digits.weights, "f" * 64)
    _, info3 = reference.reference_features("mnist:test", other)
    assert info3["cached"] is False and info3["cache_file"] != info1["cache_file"] and len(calls) == 2


def test_memorisation_share_of_copies_novel_images_and_a_hand_computed_case():
    from atelier.metrics.memorisation import memorisation

    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (20, 3, 8, 8), generator=g, dtype=torch.uint8)
    copies = memorisation(train[:10].clone(), train)
    assert copies["value"] == 1.0 and copies["n_train"] == 20                 # copies sit at distance 0
    flat = torch.full((10, 3, 8, 8), 128, dtype=torch.uint8)  # mid-grey sits nearer any noise image than two noise
    assert memorisation(flat, train)["value"] == 1.0          # images sit to each other: a pixel distance's limit
    far = torch.where(train[:10] > 127, 0, 255).to(torch.uint8)               # each pixel flipped to the far end
    assert memorisation(far, train)["value"] == 0.0
    # Two training images at distance 1 (one pixel, 0 -> 255) apart; a sample halfway is nearer than 1: counted.
    a = torch.zeros(2, 1, 1, 2, dtype=torch.uint8)
    a[1, 0, 0, 0] = 255
    rec = memorisation(torch.tensor([[[[128, 0]]], [[[0, 255]]]], dtype=torch.uint8), a)
    assert rec["threshold"] == 1.0 and rec["value"] == 0.5
    with pytest.raises(ValueError, match="at least 2"):
        memorisation(a, a[:1])
