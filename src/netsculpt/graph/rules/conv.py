"""Convolutions, pooling and resampling, channel and pixel shuffles."""

from __future__ import annotations

from netsculpt.graph.rules._base import _each_output, _prod, op_name, rule


@rule(
    "conv1d",
    "conv2d",
    "conv3d",
    "convolution",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)
def conv(t, node):
    name = op_name(node)
    x, w = node.args[0], node.args[1]
    b = node.args[2] if len(node.args) > 2 else None
    if name == "convolution":
        # convolution(input, weight, bias, stride, padding, dilation, transposed,
        #             output_padding, groups)
        transposed, groups = bool(node.args[6]), node.args[8]
    else:
        transposed = name.startswith("conv_transpose")
        # groups is argument 6 of both schemas:
        #   convN(input, weight, bias, stride, padding, dilation, groups)
        #   conv_transposeN(input, weight, bias, stride, padding, output_padding, groups, dilation)
        groups = node.args[6] if len(node.args) > 6 else 1
    lx, lw = t.L(x), t.L(w)
    out_shape = t.shape(node)
    cin, cout = t.shape(x)[1], out_shape[1]
    if transposed:  # weight is (Cin, Cout/groups, k...)
        t.role(w, 0, "in")
        t.role(w, 1, "out")
        t.unify(lx[1], lw[0], node)
        g_in, _ = t.factor(lx[1], cin // groups, node) if groups > 1 else ((), ())
        out_c = t.product(g_in, lw[1]) if groups > 1 else lw[1]
    else:  # weight is (Cout, Cin/groups, k...)
        t.role(w, 0, "out")
        t.role(w, 1, "in")
        out_c = lw[0]
        if groups == 1:
            t.unify(lx[1], lw[1], node)
        else:
            # channels are laid out as (groups, per-group); depthwise is per-group == 1
            g_in, per_in = t.factor(lx[1], cin // groups, node)
            g_out, per_out = t.factor(lw[0], cout // groups, node)
            t.unify(g_in, g_out, node)
            if cin // groups > 1:
                # a grouped conv keeps its group count and narrows every group alike;
                # depthwise convs (one channel per group) lose whole groups instead
                t.unify(per_in, lw[1], node)
                t.protect(g_in, "group count of a grouped conv")
    t.record_conv(node, lx[1], g_in if groups > 1 else None)
    if b is not None:
        t.role(b, 0, "out")
        t.unify(t.L(b)[0], out_c, node)
    out = [lx[0], out_c] + [t.fresh(s, "spatial") for s in out_shape[2:]]
    kernel = _prod(t.shape(w)[2:])
    t.macs(node, numel_of=x if transposed else node, factors=[(w, 1)], const=kernel)
    return out


@rule(
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "upsample_nearest1d",
    "upsample_nearest2d",
    "upsample_bilinear2d",
    "upsample_bicubic2d",
    "upsample_linear1d",
    "_upsample_nearest_exact2d",
    "_adaptive_avg_pool2d",
    "lp_pool2d",
    "interpolate",
)
def pool(t, node):
    x = node.args[0]
    lx = t.L(x)
    nd = len(t.shape(x))
    # leading (N, C) or (C,) dims keep their channels; the trailing spatial dims are new
    spatial = {"1d": 1, "2d": 2, "3d": 3}
    k = next((v for s, v in spatial.items() if s in op_name(node)), 2)

    def shaped(val):
        shp = tuple(val.shape)
        return list(lx[: nd - k]) + [t.fresh(s, "spatial") for s in shp[nd - k :]]

    return _each_output(t, node, shaped)


@rule("channel_shuffle", "native_channel_shuffle")
def channel_shuffle(t, node):
    x, groups = node.args[0], node.args[1]
    lx = list(t.L(x))
    c = t.shape(x)[1]
    outer, inner = t.factor(lx[1], c // groups, node)
    t.protect(outer, "channel_shuffle groups")
    lx[1] = t.product(inner, outer)
    return lx


@rule("pixel_shuffle", "pixel_unshuffle")
def pixel_shuffle(t, node):
    t.protect_node(node.args[0], "pixel shuffle moves channels into space")
    return t.opaque(node)
