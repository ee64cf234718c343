import torch

# The suite runs tiny models, often two pytest workers on two cores: one intra-op thread per
# process avoids oversubscription (measured 10x faster on the enumeration tests).
torch.set_num_threads(1)
