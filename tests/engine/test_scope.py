"""ns.prune(..., scope=): the scopes are captured as one program with the inputs they really
receive; channels coupled across scopes go together, outputs the outer code uses stay whole."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import NetsculptError


class Loopy(nn.Module):
    """A forward no graph describes (a Python loop over a data-dependent count) around two
    plain submodules."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 8, 3, padding=1))  # fmt: skip
        self.head = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, images: list[torch.Tensor]):
        feats = self.body(torch.stack(images)).mean((2, 3))
        out = self.head(feats)
        keep = int((out[:, 0] > -1e9).sum())  # data-dependent
        return [out[i] for i in range(keep)]


def test_scopes_pruned_outputs_kept_and_plan_replays():
    torch.manual_seed(0)
    net, imgs = Loopy().eval(), [torch.randn(3, 8, 8), torch.randn(3, 8, 8)]
    rep = ns.prune(net, (imgs,), amount=0.5, scope=["body", "head"], importance="l2")
    assert net.body[0].out_channels == 8 and net.head[0].out_features == 16
    assert net.body[2].out_channels == 8 and net.head[2].out_features == 4  # scope outputs
    assert [o.shape for o in net(imgs)] == [torch.Size([4])] * 2
    assert rep.details["scopes"] == ["body", "head"]
    assert rep.after.params < rep.before.params and rep.after.macs < rep.before.macs
    assert rep.plan.config["scope"] == ["body", "head"]
    assert {a.args["anchor"][0].split(".")[0] for a in rep.plan.actions} == {"body", "head"}
    assert "torch.Tensor.mean in the model forward" in rep.details["kept_whole"]["body output"]
    assert any(n.startswith("body output keeps its width") for n in rep.notes)
    fresh = Loopy().eval()
    ns.apply(fresh, (imgs,), rep.plan.to_dict())
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in net.parameters()]


def test_bad_scopes_are_one_line_errors():
    net, imgs = Loopy().eval(), [torch.randn(3, 8, 8)]
    with pytest.raises(NetsculptError, match="scope 'neck'.*no such submodule.*body, head"):
        ns.prune(net, (imgs,), amount=0.5, scope="neck")
    with pytest.raises(NetsculptError, match="lies inside scope 'body'"):
        ns.prune(net, (imgs,), amount=0.5, scope=["body", "body.0"])
    with pytest.raises(NetsculptError, match="between= with scope="):
        ns.prune(net, (imgs,), amount=0.5, scope="body", steps=2, between=lambda m, r: None)
    with pytest.raises(NetsculptError, match="data batch 0"):
        ns.prune(net, (imgs,), amount=0.5, scope="body", data=[((torch.randn(2, 3),), None)])
    shapes = [p.shape for p in net.parameters()]
    with pytest.raises(NetsculptError, match="scope 'head'.*runs 2 times"):

        class Twice(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = nn.Linear(4, 4)

            def forward(self, x):
                return self.head(self.head(x))

        ns.prune(Twice(), torch.randn(1, 4), amount=0.5, scope="head")
    assert [p.shape for p in net.parameters()] == shapes


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(16, 6, 1)

    def forward(self, xs: list[torch.Tensor]):
        return self.conv(xs[0])


class Coupled(nn.Module):
    """body -> a dict of features passed on unchanged -> head; between them the outer code
    reads shapes only, feeds the features to ``side`` (a conv outside the scopes) and loops
    over a data-dependent count."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1))  # fmt: skip
        self.head = Head()
        self.side = nn.Conv2d(16, 4, 1)

    def forward(self, images: list[torch.Tensor]):
        feats = {"p": self.body(torch.stack(images))}
        size = feats["p"].shape[-2:]
        out, aux = self.head(list(feats.values())), self.side(feats["p"])
        keep = int((out.flatten(1)[:, 0] > -1e9).sum())
        return [out[i] + aux[i].mean() + size[0] for i in range(keep)]


def test_channels_coupled_across_scopes_and_outside_conv_sliced():
    torch.manual_seed(0)
    net, imgs = Coupled().eval(), [torch.randn(3, 8, 8), torch.randn(3, 8, 8)]
    rep = ns.prune(net, (imgs,), amount=0.5, scope=["body", "head"], importance="l2")
    assert net.body[2].out_channels == net.head.conv.in_channels == net.side.in_channels == 8
    assert net.head.conv.out_channels == 6 and net.side.out_channels == 4  # outputs kept
    assert rep.details["links"] == 1 and rep.details["adopted"] == ["side"]
    assert [o.shape for o in net(imgs)] == [torch.Size([6, 8, 8])] * 2
    fresh = Coupled().eval()
    ns.apply(fresh, (imgs,), rep.plan.to_dict())
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in net.parameters()]


@pytest.mark.parametrize("importance", ["activation", "taylor"])
def test_data_with_scope_scores_the_program_on_every_batch(importance):
    torch.manual_seed(0)
    imgs = [torch.randn(3, 8, 8), torch.randn(3, 8, 8)]
    data = [(([torch.randn(3, 8, 8) * (1 + i) for _ in range(3)],), None) for i in range(3)]
    reps = {}
    for imp, d in ((importance, data), ("l2", None)):
        net = Coupled().eval()
        reps[imp] = ns.prune(net, (imgs,), amount=0.5, scope=["body", "head"], importance=imp,
                             data=d)  # fmt: skip
        assert net.body[2].out_channels == net.head.conv.in_channels == 8
    assert reps[importance].details["importance"] == importance
    plans = {k: [a.args["channels"] for a in r.plan.actions] for k, r in reps.items()}
    assert plans[importance] != plans["l2"]


def test_outer_code_that_reads_a_pruned_width_is_refused_and_restored():
    class Reads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Conv2d(3, 8, 1), Head()
            self.head.conv = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            f = self.body(x)
            return self.head([f]), torch.zeros(1, f.shape[1])

    net = Reads().eval()
    shapes = [p.shape for p in net.parameters()]
    with pytest.raises(NetsculptError, match="outputs changed structure after the edit"):
        ns.prune(net, torch.randn(1, 3, 4, 4), amount=0.5, scope=["body", "head"])
    assert [p.shape for p in net.parameters()] == shapes and "forward" not in vars(net)


@pytest.mark.slow
def test_ssdlite_backbone_outputs_pruned_with_the_head_inputs(tmp_path):
    det = pytest.importorskip("torchvision.models.detection")

    def build():
        torch.manual_seed(0)
        return det.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, score_thresh=0.0
        ).eval()

    model, img = build(), torch.rand(3, 128, 128)
    with torch.no_grad():
        ref = model([img])[0]
        widths0 = [f.shape[1] for f in model.backbone(torch.rand(1, 3, 320, 320)).values()]
    data = [(([torch.rand(3, 128, 128)],), None) for _ in range(2)]
    rep = ns.prune(model, ([img],), amount=0.3, scope=["backbone", "head"], data=data)
    assert rep.details["importance"] == "activation" and rep.details["links"] == len(widths0)
    assert rep.after.params < 0.65 * rep.before.params
    with torch.no_grad():
        widths = [f.shape[1] for f in model.backbone(torch.rand(1, 3, 320, 320)).values()]
        out = model([img])[0]
    heads = model.head.classification_head.module_list
    assert [h[0][0].in_channels for h in heads] == widths and widths != widths0
    assert {k: v.shape[1:] for k, v in out.items()} == {k: v.shape[1:] for k, v in ref.items()}
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=build()).eval()
    with torch.no_grad():
        again = back([img])[0]
    assert all(torch.allclose(out[k].float(), again[k].float(), atol=1e-4) for k in out)


@pytest.mark.slow
def test_faster_rcnn_backbone_fpn_and_heads():
    det = pytest.importorskip("torchvision.models.detection")
    torch.manual_seed(0)
    model = det.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, min_size=96, max_size=96, box_score_thresh=0.0
    ).eval()
    img, x = torch.rand(3, 96, 96), torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        ref = model([img])[0]
        widths0 = [f.shape[1] for f in model.backbone.body(x).values()]
    scopes = ["backbone.body", "backbone.fpn", "rpn.head", "roi_heads.box_head"]
    rep = ns.prune(model, ([img],), amount=0.3, scope=scopes, importance="l2")
    assert rep.after.params < 0.8 * rep.before.params
    with torch.no_grad():  # the body's outputs go with the FPN's inputs
        widths = [f.shape[1] for f in model.backbone.body(x).values()]
    assert [b[0].in_channels for b in model.backbone.fpn.inner_blocks] == widths != widths0
    assert model.backbone.out_channels == model.backbone.fpn.layer_blocks[0][0].out_channels
    assert model.roi_heads.box_predictor.cls_score.in_features == 1024  # box_head output kept
    with torch.no_grad():
        out = model([img])[0]
    assert set(out) == set(ref) == {"boxes", "labels", "scores"}
    assert out["boxes"].shape[1] == 4 and len(out["boxes"]) > 0
    kept = rep.details["kept_whole"]  # the FPN's levels feed the RoI pooling, outside the scopes
    assert "torchvision.roi_align in roi_heads.box_roi_pool" in kept["backbone.fpn output['0']"]


def test_an_outside_conv_that_also_runs_on_other_tensors_is_not_sliced():
    class Twice(Coupled):
        def forward(self, images):
            f = self.body(torch.stack(images))
            return self.head([f]), self.side(f), self.side(torch.ones(1, 16, 8, 8))

    net, imgs = Twice().eval(), [torch.randn(3, 8, 8)]
    rep = ns.prune(net, (imgs,), amount=0.5, scope=["body", "head"], importance="l2")
    assert net.side.in_channels == net.body[2].out_channels == 16 and not rep.details["adopted"]
    assert "side, which runs 2 times" in rep.details["kept_whole"]["body output"]
    assert net.body[0].out_channels == 8  # inside the scopes, pruned as before
