"""Run by test_training_run.py under torchrun: for each loss weighting named by ``weightings=a,b,...`` (default: the
config's own), train a few steps into ``<train.out_dir>/<weighting>``, then record digests of this rank's weights and
weighting state there. One launch, one process group for all of them: the weightings' runs follow one another."""
import hashlib
import os
import sys
from pathlib import Path

import torch

from mtl_perception.config import load_config
from mtl_perception.training.trainer import Trainer, _unwrap
from mtl_perception.distributed import shutdown_distributed


def _tensors(state: object, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor of a (nested) state dict, with its path: module state and an optimiser's (FAMO's Adam)."""
    if torch.is_tensor(state):
        return [(prefix, state)]
    if isinstance(state, dict):
        return [item for key in sorted(state, key=str) for item in _tensors(state[key], f"{prefix}/{key}")]
    return []


def run(overrides: list[str]) -> None:
    config = load_config(None, overrides)
    trainer = Trainer(config, progress=False)
    trainer.fit()
    digest = hashlib.sha256()
    for name, tensor in sorted(_unwrap(trainer.model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    rank = int(os.environ.get("RANK", "0"))
    (Path(config.train.out_dir) / f"weights_rank{rank}.sha256").write_text(digest.hexdigest())
    weighting = hashlib.sha256()  # the loss-weighting state lives outside DDP: it must agree too
    for name, tensor in _tensors(trainer.weighting.state_dict()):
        weighting.update(name.encode())
        weighting.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    (Path(config.train.out_dir) / f"weighting_rank{rank}.sha256").write_text(weighting.hexdigest())


def main() -> None:
    torch.set_num_threads(1)
    overrides = [a for a in sys.argv[1:] if not a.startswith("weightings=")]
    named = [a.partition("=")[2].split(",") for a in sys.argv[1:] if a.startswith("weightings=")]
    if not named:
        run(overrides)
    else:
        out = Path(load_config(None, overrides).train.out_dir)
        for name in named[0]:
            run(overrides + [f"train.loss_weighting={name}", f"train.out_dir={out / name}"])
    shutdown_distributed()


if __name__ == "__main__":
    main()
