"""DynamicD as a :class:`common.stylegan2.Method`: D's width follows a schedule; nothing else changes.

What the official genforce/dynamicd adds to StyleGAN2-ADA (spec dynamicd.md §2): masked weights in D's layers
(:mod:`dynamicd.width`) and, in ``training/training_loop.py``, every 4 iterations after the phases and the image
count, r = occupy_start + (occupy_end - occupy_start) * cur_kimg / total_kimg written into every dynamic layer.
No loss, parameter or optimizer is added, so DynamicD composes with loss-side methods (``methods: [insgen,
dynamicd]``) and with ADA. The hooks are installed on the training D only: snapshots hold the full-width D with plain
StyleGAN2 keys, and G_ema, InsGen's D_ema and evaluation never see a mask.

Deviations, by design (README): random subsets come from a generator re-seeded every iteration from (seed, rank,
iteration) instead of numpy's global RNG; on ``--resume`` the schedule continues from the restored image count
(``dynamicd.restart_on_resume: true`` restarts it at occupy_start, as the official code, which does not restore
cur_nimg).
"""

from __future__ import annotations

from typing import Any

from common import dist
from common.stylegan2.method import LoopState, Method
from dynamicd.config import DynamicDConfig
from dynamicd.width import WidthController, install, occupy_ratio


class DynamicD(Method):
    """DynamicD on the shared loop; with the ratios off (<= 0) exactly plain StyleGAN2-ADA (the constant-width twin)."""

    name = "dynamicd"

    config_class = DynamicDConfig

    def __init__(self) -> None:
        self.controller: WidthController | None = None
        self.origin_idx, self.origin_nimg = 0, 0  # where the schedule starts (moves on resume with restart_on_resume)

    def setup(self, state: LoopState) -> None:
        dc = state.cfg.dynamicd
        if not dc.enabled:
            return
        self.controller = WidthController(dc.occupy_start, dc.randomly_select)
        install(state.D, self.controller, dc.keepd)

    def ratio_at(self, state: LoopState) -> float:
        """The ratio in force after ``state.batch_idx`` iterations: set at the last multiple of ``interval`` since
        the schedule's origin, from the image count then (occupy_start before the first update)."""
        dc, cfg = state.cfg.dynamicd, state.cfg
        since = state.batch_idx - self.origin_idx
        last_update = since - since % dc.interval
        if last_update <= 0:
            return dc.occupy_start
        nimg = state.cur_nimg - (since - last_update) * cfg.train.batch - self.origin_nimg
        return occupy_ratio(dc.occupy_start, dc.occupy_end, nimg / 1000, cfg.train.total_kimg)

    def before_iteration(self, state: LoopState) -> None:
        if self.controller is not None:
            self.controller.reseed(state.cfg.seed, dist.get_rank(), state.batch_idx)

    def after_iteration(self, state: LoopState) -> None:
        if self.controller is not None:
            self.controller.ratio = self.ratio_at(state)

    def scalars(self, state: LoopState) -> dict[str, float]:
        return {"Progress/occupy_ratio": self.controller.ratio} if self.controller is not None else {}

    def load_extra_state(self, state: LoopState, extra: dict[str, Any]) -> None:
        """On resume: the ratio of the restored image count, or occupy_start again with ``restart_on_resume``."""
        if self.controller is None:
            return
        if state.cfg.dynamicd.restart_on_resume:
            self.origin_idx, self.origin_nimg = state.batch_idx, state.cur_nimg
        self.controller.ratio = self.ratio_at(state)
