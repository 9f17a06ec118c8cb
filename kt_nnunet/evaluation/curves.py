"""Training curves of a trained fold: from the checkpoint's ``logging`` dict, else from nnU-Net's text log.

nnU-Net's ``checkpoint_*.pth`` holds ``logging`` with per-epoch lists ``train_losses``, ``val_losses``,
``mean_fg_dice``, ``ema_fg_dice`` (and learning rates, timestamps). The checkpoint is read with the safe
loader (``weights_only`` + allow-list). A model folder without a readable checkpoint still has
``fold_N/training_log_*.txt``; its ``train_loss`` / ``val_loss`` / ``Pseudo dice`` lines give the same
curves, the EMA recomputed with nnU-Net's rule (``ema = 0.9 ema + 0.1 mean``).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

CURVE_KEYS = ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice")
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
_NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)


def _floats(values) -> list[Optional[float]]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(None if math.isnan(f) else f)
    return out


def curves_from_checkpoint(path: Path) -> Optional[dict]:
    from kt_nnunet.errors import KtNnunetError
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely

    try:
        logging = load_checkpoint_safely(path).get("logging") or {}
    except KtNnunetError:
        return None
    if not any(logging.get(k) for k in CURVE_KEYS):
        return None
    curves = {k: _floats(logging.get(k, [])) for k in CURVE_KEYS}
    curves["epochs"] = max(len(v) for v in curves.values())
    curves["source"] = str(path)
    return curves


def curves_from_log(path: Path) -> Optional[dict]:
    train, val, dice = [], [], []
    for line in Path(path).read_text(errors="replace").splitlines():
        _, _, message = line.partition(": ")
        message = message.strip()
        if message.startswith("train_loss "):
            train.extend(_floats(_NUMBER.findall(message[len("train_loss "):])[:1]))
        elif message.startswith("val_loss "):
            val.extend(_floats(_NUMBER.findall(message[len("val_loss "):])[:1]))
        elif message.startswith("Pseudo dice"):
            text = re.sub(r"np\.float\d+\(", "(", message[len("Pseudo dice"):])
            per_class = [v for v in _floats(_NUMBER.findall(text)) if v is not None]
            dice.append(sum(per_class) / len(per_class) if per_class else None)
    if not (train or val or dice):
        return None
    ema: list[Optional[float]] = []
    for value in dice:
        previous = ema[-1] if ema else None
        ema.append(value if previous is None else (previous if value is None else 0.9 * previous + 0.1 * value))
    curves = {"train_losses": train, "val_losses": val, "mean_fg_dice": dice, "ema_fg_dice": ema}
    curves["epochs"] = max(len(v) for v in curves.values())
    curves["source"] = str(path)
    return curves


def training_curves(model_folder: str | Path, fold: int = 0) -> Optional[dict]:
    """``{train_losses, val_losses, mean_fg_dice, ema_fg_dice, epochs, source}`` or None if nothing is found."""
    fold_folder = Path(model_folder) / f"fold_{fold}"
    for name in CHECKPOINTS:
        if (fold_folder / name).is_file():
            curves = curves_from_checkpoint(fold_folder / name)
            if curves is not None:
                return curves
    for log in sorted(fold_folder.glob("training_log_*.txt"), reverse=True):  # newest run first
        curves = curves_from_log(log)
        if curves is not None:
            return curves
    return None
