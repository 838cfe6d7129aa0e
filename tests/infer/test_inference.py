"""decode: the one place logits become probabilities and masks, checked against values worked by hand."""

import math

import numpy as np
import torch

from unetkit.infer.inference import decode, foreground


def test_binary_logits_decode_with_the_recorded_threshold():
    logits = torch.tensor([0.0, 2.0, -1.0, math.log(0.7 / 0.3)]).view(1, 1, 1, 4)  # sigmoid: 0.5, 0.881, 0.269, 0.7
    probs, pred = decode(logits, binary=True, threshold=0.5)
    assert probs.shape == (1, 1, 1, 4) and pred.shape == (1, 1, 4) and pred.dtype == torch.uint8
    np.testing.assert_allclose(probs.flatten().numpy(), [0.5, 0.8808, 0.2689, 0.7], atol=1e-4)
    assert pred.flatten().tolist() == [0, 1, 0, 1]  # strictly above: 0.5 is background
    assert decode(logits, binary=True, threshold=0.75)[1].flatten().tolist() == [0, 1, 0, 0]


def test_multiclass_logits_decode_to_softmax_and_argmax():
    logits = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0]]).view(1, 3, 1, 2)
    probs, pred = decode(logits, binary=False)
    assert pred.tolist() == [[[2, 1]]]
    e = np.exp([1.0, 0.0, 2.0])
    np.testing.assert_allclose(probs[0, :, 0, 0].numpy(), e / e.sum(), atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(1, 1, 2))


def test_foreground_is_the_same_rule_on_kept_probabilities():
    p = np.array([[0.49, 0.4901], [0.0, 1.0]], np.float32)
    assert foreground(p, 0.49).tolist() == [[False, True], [False, True]]
    assert torch.equal(foreground(torch.from_numpy(p), 0.49), torch.from_numpy(p) > 0.49)
