"""How the generated model.py computes the loss, stated once for codegen and the memory model.

Without tensor parallel, `lm_loss` computes the cross-entropy LOSS_CHUNK_TOKENS tokens at a
time in fp32 and writes the gradient of the logits during the forward pass, so neither an
fp32 copy of the whole logits nor a vocabulary-wide log-softmax is ever alive: what the loss
keeps is one gradient in the logits' dtype (the idea of Liger-Kernel's fused cross-entropy,
Hsu et al. 2024, without fusing the LM head). `plan.memory` prices exactly that.
"""

from __future__ import annotations

LOSS_CHUNK_TOKENS = 1024  # fp32 working set: LOSS_CHUNK_TOKENS × vocab × 4 bytes per buffer
