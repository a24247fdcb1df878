"""The notebooks' hands-on cells. Every notebook 01-08 has at least one code cell tagged `write-it` (cell metadata),
where the learner writes the core piece of that notebook; a prefilled working solution is there to delete and rewrite.
The code cell after it checks the learner's version against the `helpers` one on the same inputs.

A write-it cell and its check run on their own (they import what they use and make their own inputs), so this file
runs each pair outside its notebook: the solution must pass, and each classic mistake listed below, written into the
solution, must make the check fail with a message that names what differs. Notebooks also open with "What you will
learn" and close with a recap and papers to read."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {path.name[:2]: path for path in sorted((ROOT / "notebooks").glob("0[1-8]_*.ipynb"))}

# Per notebook: (text in the solution, the same text with a classic mistake, what the check's message must say).
MISTAKES: dict[str, list[tuple[str, str, str]]] = {
    "01": [
        ("torch.exp(0.5 * logvar)", "torch.exp(logvar)", "standard deviation"),
        ("torch.randn_like(mu)", "torch.rand_like(mu)", "noise eps"),
        ('reduction="sum"', 'reduction="mean"', "reconstruction term differs"),
        ("torch.sum(", "torch.mean(", "KL term differs"),
    ],
    # ---
    "02": [
        ("h * (1 + gamma) + beta", "h * gamma + beta", "scale differs"),
        ("gamma, beta = ", "beta, gamma = ", "shift"),
    ],
    # ---
    "03": [
        ("return (loss_image + loss_text) / 2", "return loss_image", "average the image->caption and caption->image"),
        ("targets = same_caption.float() / same_caption.float().sum(dim=1, keepdim=True)",
         "targets = torch.eye(len(same_caption))", "identical captions"),
    ],
    # ---
    "04": [
        ("fake_term = F.relu(1 + fake_logits).mean()", "fake_term = F.relu(1 - fake_logits).mean()",
         "discriminator loss differs"),
        ("return -fake_logits.mean()", "return F.relu(1 - fake_logits).mean()", "generator loss differs"),
    ],
    # ---
    "05": [("(1 - abar).sqrt() * noise  # sqrt(abar)", "(1 - abar) * noise  # sqrt(abar)", "not variances"),
           ("v = abar.sqrt() * noise - (1 - abar).sqrt() * x0", "v = noise", r"target v = sqrt\(abar\)"),
           ("weight = snr.clamp(max=gamma) / (snr + 1)", "weight = snr.clamp(max=gamma) / snr", r"\(SNR \+ 1\)"),
           ("x0_hat = x0_hat.clamp(-1, 1)", "x0_hat = x0_hat", "clamped"),
           ("abar_t.sqrt() * x_t - (1 - abar_t).sqrt() * v_hat", "x_t - v_hat", "x0_hat = sqrt")],
    # ---
    "06": [("return x + (s - t) * u", "return x + (t - s) * u", r"x_s = x \+ \(s - t\) u"),
           ("return x + (s - t) * 0.5 * (u + u_next)", "return x + (s - t) * u_next", r"average 0.5 \(u \+ u_next\)"),
           ("if s <= 0:  # into the clean end", "if False:  # into the clean end", "Euler's alone"),
           ("x_t = (1 - t_) * x0 + t_ * noise", "x_t = t_ * x0 + (1 - t_) * noise", r"x_t = \(1 - t\) x0 \+ t eps"),
           ("target = noise - x0", "target = x0 - noise", "velocity target eps - x0"),
           ("error = (model_fn(x_t, t) - target)", "error = (model_fn(x_t, 1000 * t) - target)", "told t itself"),
           ("x = x + gate_a[:, None] * block.proj(attended)", "x = x + block.proj(attended)", "multiplied by its gate"),
           ("* (1 + scale_a[:, None])", "* scale_a[:, None]", r"norm\(x\) \* \(1 \+ scale\) \+ shift")],
    # ---
    "07": [(" / math.sqrt(d)", "", r"divided by sqrt\(d\)"),
           ("scores = scores.masked_fill(", "scores = scores + 0 * scores.masked_fill(", "masked tokens"),
           ("return x + self.out(out)", "return self.out(out)", "added back")],
    # ---
    "08": [("return h * (1 + gamma) + beta", "return h * gamma + beta", r"h \* \(1 \+ gamma\)"), ("h = self.film(h, cond)  # scale and shift by the condition\n        return F.silu(h)", "h = F.silu(h)\n        return self.film(h, cond)", "SiLU last, after FiLM")],
}


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def write_it_pairs(path: Path) -> list[tuple[str, str]]:
    """(write-it cell, the check cell after it) sources, in notebook order."""
    cells = json.loads(path.read_text())["cells"]
    pairs = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code" and "write-it" in cell["metadata"].get("tags", []):
            check = next(c for c in cells[index + 1:] if c["cell_type"] == "code")
            pairs.append((_source(cell), _source(check)))
    return pairs


def run_pair(solution: str, check: str) -> None:
    namespace: dict = {"__name__": "__write_it__"}
    exec(compile(solution, "<write-it cell>", "exec"), namespace)
    exec(compile(check, "<check cell>", "exec"), namespace)


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_every_notebook_has_a_write_it_cell_and_a_check(number):
    pairs = write_it_pairs(NOTEBOOKS[number])
    assert pairs, f"notebook {number} has no code cell tagged write-it"
    for solution, check in pairs:
        assert "assert_close" in check, f"notebook {number}: the cell after a write-it cell must check it"
        run_pair(solution, check)


@pytest.mark.parametrize("number, right, wrong, says",
                         [(n, *mistake) for n, mistakes in MISTAKES.items() for mistake in mistakes])
def test_a_classic_mistake_fails_the_check_and_says_what_differs(number, right, wrong, says):
    solution, check = next(pair for pair in write_it_pairs(NOTEBOOKS[number]) if right in pair[0])
    with pytest.raises(AssertionError, match=says):
        run_pair(solution.replace(right, wrong), check)


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_every_notebook_says_what_you_will_learn_and_recaps_with_papers(number):
    cells = json.loads(NOTEBOOKS[number].read_text())["cells"]
    markdown = [_source(c) for c in cells if c["cell_type"] == "markdown"]
    assert "## What you will learn" in markdown[1] and "Prerequisites" in markdown[1]
    assert "## Recap" in markdown[-1] and "## Further reading" in markdown[-1]
    assert "https://arxiv.org/abs/" in markdown[-1]


def test_the_mistakes_cover_every_notebook():
    assert all(MISTAKES[number] for number in NOTEBOOKS), [n for n in NOTEBOOKS if not MISTAKES[n]]
