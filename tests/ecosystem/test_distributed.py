"""Multi-process training and mixed precision.

* Two processes (``accelerate launch --config_file configs/accelerate/ddp_cpu.yaml``: the
  torch.distributed launcher, gloo on CPU; ``accelerate launch --cpu`` would start only one; the
  same as ``torchrun --standalone --nproc_per_node 2``) with 4 rows each train exactly like one
  process with 8 rows, and like one
  process with 4 rows and 2 accumulation steps: same logged losses, same weights. The datasets fix
  t and x_t and vary the number of scored tokens per micro-batch, so a loss mis-scaled by the
  world size, the accumulation steps or the token count would show.
* With t and x_t drawn inside ``forward`` (real training) the curves differ by noise only.
* The FSDP config (``fsdp_gpu.yaml``, with 2 CPU processes and no bf16) trains like one process
  too, and ``Trainer.save_model`` writes the gathered full model.
* bf16 autocast keeps the loss and its log-probabilities in float32.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .common import model_params, noisy_inputs, tiny_model
from .ddp_train import RUNS, run

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(launcher),
        "launch",
        "--config_file",
        str(REPO / "configs" / "accelerate" / "ddp_cpu.yaml"),
        str(HERE / "ddp_train.py"),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def fsdp_two_processes(tmp_path_factory):
    """``configs/accelerate/fsdp_gpu.yaml`` as shipped (FSDP2, DDiTBlock wrapping, resharding,
    full state dict, RAM-efficient loading) with only what a CPU needs changed: 2 processes, no
    bf16, no gpu_ids. torch's FSDP2 runs on CPU with gloo."""
    import yaml

    root = tmp_path_factory.mktemp("fsdp")
    config = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp_gpu.yaml").read_text())
    config.update(num_processes=2, mixed_precision="no")
    config.pop("gpu_ids")
    (root / "fsdp_cpu.yaml").write_text(yaml.safe_dump(config))
    out = root / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(launcher),
        "launch",
        "--config_file",
        str(root / "fsdp_cpu.yaml"),
        str(HERE / "ddp_train.py"),
        str(out),
        "mdlm_fixed",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), root


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    torch.set_num_threads(1)
    results = {}
    for name in RUNS:
        results[(name, 8, 1)] = run(name, per_device_batch=8, grad_accum=1, output_dir=str(root / f"{name}_8"))
        if RUNS[name][1]:
            results[(name, 4, 2)] = run(name, per_device_batch=4, grad_accum=2, output_dir=str(root / f"{name}_4x2"))
    return results


@pytest.mark.parametrize("name", [n for n, (_, fixed) in RUNS.items() if fixed])
def test_two_processes_train_exactly_like_one(two_processes, one_process, name):
    ddp = two_processes[name]
    assert ddp["world_size"] == 2 and ddp["ranks_agree"], "the two ranks ended with different weights"
    for layout in ((name, 8, 1), (name, 4, 2)):
        ref = one_process[layout]
        assert ref["world_size"] == 1
        assert len(ddp["losses"]) == len(ref["losses"]) == 6
        torch.testing.assert_close(torch.tensor(ddp["losses"]), torch.tensor(ref["losses"]), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(torch.tensor(ddp["params"]), torch.tensor(ref["params"]), rtol=1e-4, atol=1e-5)


def test_random_time_training_has_the_same_curve_shape(two_processes, one_process):
    ddp, ref = two_processes["mdlm_random"]["losses"], one_process[("mdlm_random", 8, 1)]["losses"]
    assert len(ddp) == len(ref) == 40
    # medians: a draw of a tiny t weights a masked token by 1/t, so single steps spike
    first = [statistics.median(c[:5]) for c in (ddp, ref)]
    last = [statistics.median(c[-10:]) for c in (ddp, ref)]
    for f, l in zip(first, last):
        assert l < 0.1 * f, (ddp, ref)  # both fall by more than 10x, to the same near-zero level
        assert l < 0.1, (ddp, ref)


def test_fsdp_config_trains_exactly_like_one_process_and_saves_a_full_model(fsdp_two_processes, one_process):
    from transformers import AutoModel

    fsdp, root = fsdp_two_processes
    run = fsdp["mdlm_fixed"]
    assert run["world_size"] == 2 and run["ranks_agree"]
    ref = one_process[("mdlm_fixed", 8, 1)]
    torch.testing.assert_close(torch.tensor(run["losses"]), torch.tensor(ref["losses"]), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(torch.tensor(run["params"]), torch.tensor(ref["params"]), rtol=1e-4, atol=1e-5)
    # Trainer.save_model gathered the full state dict on rank 0: a self-contained, loadable folder
    final = root / "mdlm_fixed" / "final"
    assert (final / "modeling_mdlm.py").is_file() and (final / "model.safetensors").is_file()
    saved = AutoModel.from_pretrained(final)
    flat = torch.cat([p.detach().reshape(-1) for p in saved.parameters()])
    torch.testing.assert_close(flat, torch.tensor(ref["params"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config_class,model_class", model_params("bf16"))
def test_bf16_autocast_keeps_the_loss_in_float32(config_class, model_class):
    model = tiny_model(model_class)
    x_t, timesteps, x0 = noisy_inputs(model, batch=4, seed=2)

    def loss(autocast):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(input_ids=x_t, timesteps=timesteps, labels=x0, generator=torch.Generator().manual_seed(0))

    full, mixed = loss(False), loss(True)
    assert mixed.loss.dtype == torch.float32, "the loss must be reduced in float32 under autocast"
    assert mixed.loss_per_token is None or mixed.loss_per_token.dtype == torch.float32
    # bf16 matmuls (8-bit mantissa) perturb the logits by ~1e-2; the loss stays close
    torch.testing.assert_close(mixed.loss, full.loss, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("name", ["ddp_cpu", "ddp_gpu", "fsdp_gpu"])
def test_accelerate_configs_load_and_fsdp_wraps_every_model(name):
    from accelerate.commands.config.config_args import load_config_from_file

    from hf_ddlm.models.auto import MODELS

    config = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.num_processes >= 2 and config.num_machines == 1
    if name == "fsdp_gpu":
        assert config.distributed_type == "FSDP" and config.mixed_precision == "bf16"
        wrap = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        for _, model_class in MODELS:  # every registered model has blocks of that class to shard
            model = tiny_model(model_class)
            assert wrap in model._no_split_modules and any(type(m).__name__ == wrap for m in model.modules())
