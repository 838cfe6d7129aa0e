"""The traced graphs in PyTorch: folding BatchNorm changes nothing, the raw graph takes any size, the
end-to-end graph decodes like Segmenter.predict, and every kind of model has its GraphKind."""

import torch

from unetkit.deploy.click_graph import CLICKS, ClickGraph
from unetkit.deploy.export import GRAPH_KINDS
from unetkit.deploy.graphs import SEGMENTATION, EndToEndGraph, RawGraph, fold_batchnorm
from unetkit.infer.checkpoint import load_model
from unetkit.infer.predict import Segmenter
from unetkit.model import UNet
from unetkit.runtime import setup


def trained_like(model: UNet) -> UNet:
    """Non-trivial BatchNorm statistics, as training leaves them."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def test_folding_batchnorm_keeps_the_outputs_and_removes_every_norm():
    model = trained_like(UNet(3, 2, (4, 8)))
    folded = fold_batchnorm(model)
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_the_raw_graph_pads_inside_for_any_size():
    model = trained_like(UNet(3, 1, (4, 8)))
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        out = RawGraph(model)(x)
    assert out.shape == (1, 1, 37, 45) and torch.allclose(out, model(x), atol=1e-6)


def test_the_end_to_end_graph_gives_predicts_masks(trained_run):
    model, meta = load_model(trained_run.best_checkpoint)
    seg = Segmenter(model, meta, setup("cpu", "fp32", channels_last=False))
    image = (torch.rand(29, 35, 3, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    with torch.no_grad():
        mask = EndToEndGraph(fold_batchnorm(model), meta)(image[None])[0]
    assert mask.dtype == torch.uint8 and mask.shape == (29, 35)
    expected = torch.from_numpy(seg.predict(image.numpy()))
    assert (mask != expected).float().mean() <= 1e-3


def test_each_kind_of_model_has_its_end_to_end_graph(click_run):
    assert GRAPH_KINDS == {"segmentation": SEGMENTATION, "interactive": CLICKS}
    model, meta = load_model(click_run.best_checkpoint)
    graph, example, names, _ = CLICKS.build(model, meta)
    assert isinstance(graph, ClickGraph) and names == (["image", "click_maps", "prev_mask"], ["probs", "mask"])
    with torch.no_grad():
        probs, mask = graph(*example)
    assert probs.shape == mask.shape == example[0].shape[:3] and graph.threshold == meta.click_threshold
    assert CLICKS.metadata(meta, "e2e")["pred_threshold"] == "0.49"


def test_an_encoders_batchnorm_folds_too():
    from unetkit.model import ModelConfig, build

    model = trained_like(build(ModelConfig(3, 1, (8, 16, 24, 32), encoder="efficientnet-lite0")))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-4)
