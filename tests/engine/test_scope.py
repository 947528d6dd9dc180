"""ns.prune(..., scope=): the scopes are captured with the inputs they really receive."""

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
    assert {a.args["scope"] for a in rep.plan.actions} == {"body", "head"}
    fresh = Loopy().eval()
    ns.apply(fresh, (imgs,), rep.plan.to_dict())
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in net.parameters()]


def test_bad_scopes_are_one_line_errors():
    net, imgs = Loopy().eval(), [torch.randn(3, 8, 8)]
    with pytest.raises(NetsculptError, match="scope 'neck'.*no such submodule.*body, head"):
        ns.prune(net, (imgs,), amount=0.5, scope="neck")
    with pytest.raises(NetsculptError, match="lies inside scope 'body'"):
        ns.prune(net, (imgs,), amount=0.5, scope=["body", "body.0"])
    with pytest.raises(NetsculptError, match="data= with scope="):
        ns.prune(net, (imgs,), amount=0.5, scope="body", data=[(imgs, None)])
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


@pytest.mark.slow
def test_faster_rcnn_backbone_fpn_and_heads():
    det = pytest.importorskip("torchvision.models.detection")
    torch.manual_seed(0)
    model = det.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, min_size=96, max_size=96, box_score_thresh=0.0
    ).eval()
    img = torch.rand(3, 96, 96)
    with torch.no_grad():
        ref = model([img])[0]
    scopes = ["backbone", "rpn.head", "roi_heads.box_head"]
    rep = ns.prune(model, ([img],), amount=0.3, scope=scopes, importance="l2")
    assert rep.after.params < 0.8 * rep.before.params
    assert model.backbone.out_channels == model.backbone.fpn.layer_blocks[0][0].out_channels
    assert model.roi_heads.box_predictor.cls_score.in_features == 1024  # box_head output kept
    with torch.no_grad():
        out = model([img])[0]
    assert set(out) == set(ref) == {"boxes", "labels", "scores"}
    assert out["boxes"].shape[1] == 4 and len(out["boxes"]) > 0
