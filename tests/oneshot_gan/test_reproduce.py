"""The tiny reproduction's pieces: one measured arm, the selection rule's verdicts, and the report."""

from __future__ import annotations

import copy

import numpy as np

from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan
from oneshot_gan import reproduce as R


def test_an_arm_is_measured_along_training_and_the_report_is_written(tmp_path):
    source = str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))
    targets = R.write_targets(tmp_path)
    spec = R.ArmSpec("GenDA", "in_domain", 0, str(tmp_path / "run"), 3, source, str(targets["in_domain"]))
    result = R.run_arm(spec)
    assert [row["iteration"] for row in result["trajectory"]] == [1, 3]  # after the first and the last iteration
    assert set(result["final"]) >= {"attr_rate", "div_feat", "div_pix", "mse_target", "style_dist", "colour_dist"}
    results = []
    for target, arms in (("in_domain", R.IN_DOMAIN_ARMS), ("photo", R.PHOTO_ARMS), ("in_domain_long", R.LONG_ARMS)):
        for arm in arms:
            for seed in (0, 1):
                copied = copy.deepcopy(result)
                copied["spec"].update(arm=arm, target=target, seed=seed)
                results.append(copied)
    grid = np.zeros((16, 3, 32, 32), dtype=np.uint8).tolist()
    samples = {"source": grid, "in_domain_reference": grid[:1], "photo_reference": grid[:1],
               **{f"in_domain/{a}": grid for a in R.IN_DOMAIN_ARMS}, **{f"photo/{a}": grid for a in R.PHOTO_ARMS}}
    record = {"results": results, "source_measures": R.source_measures(source, targets), "source": source,
              "iterations": 3, "wall_seconds": 1.0, "workers": 1, "source_note": "cached",
              "in_domain_arms": R.IN_DOMAIN_ARMS, "photo_arms": R.PHOTO_ARMS, "long_arms": R.LONG_ARMS,
              "long_iterations": 3, "samples": samples}
    text = R.write_report(tmp_path / "report", record).read_text()
    assert text.index("In-domain target") < text.index("tradeoff.png") < text.index("Photo target")
    assert "diversity above fine-tuning's on 0/2 seeds" in text  # identical copies: never above
    assert (tmp_path / "report" / "tradeoff_long.png").is_file() and "| GenDA, no truncation |" in text


def test_the_in_domain_reference_is_a_yellow_shape_and_first_reaching_finds_the_point():
    from oneshot_gan.measure import HUES, dominant_hue

    assert HUES[dominant_hue(R.in_domain_target().transpose(2, 0, 1)[None])[0]] == "yellow"
    trajectory = [{"iteration": 1, "attr_rate": 0.3}, {"iteration": 26, "attr_rate": 0.95},
                  {"iteration": 51, "attr_rate": 0.99}]
    assert R.first_reaching(trajectory)["iteration"] == 26 and R.first_reaching(trajectory, 1.0) is None
