"""The uncertainty of judged accuracies (Wilson intervals) and the trivial baselines printed beside every judge."""
import math

import pytest
import torch

from helpers.metrics import (PooledPixelBaseline, format_accuracy, frequency_baseline, majority_accuracy,
                             pooled_pixels, wilson_interval)

# Computed once with statsmodels 0.15.0: proportion_confint(successes, n, alpha=0.05, method="wilson").
STATSMODELS_WILSON = {
    (81, 100): (0.7222115462093562, 0.8748524849023126),
    (0, 40): (0.0, 0.08762160119728668),
    (40, 40): (0.9123783988027134, 1.0),
    (1, 1): (0.2065493143772374, 1.0),
    (162, 200): (0.7499876129240015, 0.8583282847220932),
    (7, 10): (0.39677814746114537, 0.8922087325936989),
    (30, 40): (0.5980603857923197, 0.858128813609037),
    (500, 1000): (0.4690696003681042, 0.5309303996318958),
}


@pytest.mark.parametrize("successes, n", list(STATSMODELS_WILSON))
def test_wilson_interval_matches_statsmodels(successes, n):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(STATSMODELS_WILSON[successes, n][0], abs=1e-12)
    assert high == pytest.approx(STATSMODELS_WILSON[successes, n][1], abs=1e-12)


def test_wilson_interval_by_hand_with_z_2():
    # z = 2, n = 4, p = 1/2: centre (0.5 + 4/8) / (1 + 4/4) = 0.5, half 2/2 * sqrt(0.25/4 + 4/64) = sqrt(1/8)
    low, high = wilson_interval(2, 4, z=2.0)
    assert (low, high) == pytest.approx((0.5 - math.sqrt(1 / 8), 0.5 + math.sqrt(1 / 8)))
    # z = 2, n = 4, p = 0: low 0, high (0 + 0.5) / 2 + sqrt(4/64) = 0.5
    assert wilson_interval(0, 4, z=2.0) == pytest.approx((0.0, 0.5))


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no samples: nothing known
    low, high = wilson_interval(0, 200)
    assert low == 0.0 and 0 < high < 0.02  # p = 0 still leaves room above
    low, high = wilson_interval(200, 200)
    assert high == 1.0 and 0.98 < low < 1
    # more samples, narrower interval, always around the observed share
    widths = [wilson_interval(0.8 * n, n)[1] - wilson_interval(0.8 * n, n)[0] for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]
    assert wilson_interval(0.8 * 1000, 1000)[0] < 0.8 < wilson_interval(0.8 * 1000, 1000)[1]
    assert wilson_interval(3 * 0.1, 3)[0] >= 0  # a float count a rounding left off an integer
    for bad in ((5, 4), (-1, 4), (0, -1)):
        with pytest.raises(ValueError, match="successes"):
            wilson_interval(*bad)


def test_format_accuracy():
    assert format_accuracy(0.81, 100) == "81.0% (n=100, 95% CI 72.2-87.5%)"
    assert format_accuracy(1.0, 40) == "100.0% (n=40, 95% CI 91.2-100.0%)"
    assert format_accuracy(0.0, 1000) == "0.0% (n=1,000, 95% CI 0.0-0.4%)"
    assert format_accuracy(float("nan"), 0) == "– (n=0)"


def test_pooled_pixels_averages_patches():
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    images[0, 0, :4, :4] = 255  # red top-left quarter
    features = pooled_pixels(images, size=2)  # (1, 3 * 2 * 2)
    assert features.shape == (1, 12)
    assert features[0, 0] == 1 and features[0, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="N, C, H, W"):
        pooled_pixels(torch.zeros(3, 8, 8))


def _coloured(labels: torch.Tensor, palette: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, 3, 16, 16) images: a background of palette[label] and a random square of a random colour."""
    images = palette[labels][:, :, None, None].expand(-1, -1, 16, 16).clone()
    for image in images:
        top, left = torch.randint(0, 10, (2,), generator=generator).tolist()
        image[:, top:top + 6, left:left + 6] = torch.randint(0, 256, (3, 1, 1), generator=generator)
    return images.to(torch.uint8)


def test_colour_baseline_reads_colour_classes_and_nothing_else():
    generator = torch.Generator().manual_seed(0)
    palette = torch.randint(0, 256, (10, 3), generator=generator)
    train_labels, test_labels = torch.randint(0, 10, (2000,), generator=generator), torch.arange(10).repeat(50)
    # class = background colour: the baseline reads (almost) every held-out image
    baseline = PooledPixelBaseline(_coloured(train_labels, palette, generator), train_labels)
    assert baseline.name == "4x4 mean-colour classifier"
    assert baseline.accuracy(_coloured(test_labels, palette, generator), test_labels) > 0.95
    # the colour is drawn independently of the class: it reads about one image in ten
    random_colour = lambda n: _coloured(torch.randint(0, 10, (n,), generator=generator), palette, generator)
    baseline = PooledPixelBaseline(random_colour(2000), train_labels)
    assert baseline.accuracy(random_colour(500), test_labels) < 0.18
    assert math.isnan(baseline.accuracy(random_colour(0), torch.zeros(0)))
    assert PooledPixelBaseline(torch.rand(20, 1, 28, 28), torch.arange(20) % 2).name == "4x4 mean-pixel classifier"
    with pytest.raises(ValueError, match="as many labels"):
        PooledPixelBaseline(torch.rand(4, 3, 8, 8), torch.zeros(3))


def test_majority_and_frequency_baselines():
    train = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 0]])  # attribute 0 in 3 of 4 faces, attribute 1 in 1 of 4
    test = torch.tensor([[1, 0], [0, 0], [1, 1], [1, 0], [1, 0]])
    # always "yes" for attribute 0 (right on 4 of 5), always "no" for attribute 1 (right on 4 of 5)
    assert majority_accuracy(train, test).tolist() == pytest.approx([0.8, 0.8])
    assert majority_accuracy(train * 2 - 1, test * 2 - 1).tolist() == pytest.approx([0.8, 0.8])  # -1/+1 labels
    # asking for attribute 1 = yes: a prompt-ignoring generator shows it on 1 face in 4; attribute 0 = no: 1 in 4;
    # attribute 0 = yes: 3 in 4
    assert frequency_baseline(train, [{1: True}, {0: False}]) == pytest.approx(0.25)
    assert frequency_baseline(train, [{0: True, 1: True}]) == pytest.approx(0.5)
    assert math.isnan(frequency_baseline(train, [{}]))
