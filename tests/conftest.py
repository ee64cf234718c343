import torch

# The suite runs tiny models, often two pytest workers on two cores: one intra-op thread per
# process avoids oversubscription (measured 10x faster on the enumeration tests).
torch.set_num_threads(1)


def pytest_configure(config):
    # marks of transformers' tests/test_modeling_common.py (tests/models/test_transformers_common.py)
    for mark in ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test"):
        config.addinivalue_line("markers", f"{mark}: a mark of transformers' ModelTesterMixin")
