#!/usr/bin/env python3
"""PyTorch reference for `kdtui bench`: the same CNN, quantizer, loss,
optimizer and batch sizes as kdtui (src/model/cnn.rs, src/model/quant.rs,
src/model/norm.rs, src/distill.rs, src/train/runner.rs), timed the same way.

kdtui bench runs it once per model and reads the one JSON line it prints;
run by hand it prints the same line. It needs torch and installs nothing:
README, "Benchmark", says how to set it up.

    python3 torch_bench.py --model teacher --threads 2 --device cpu
    python3 torch_bench.py --model student --compiled   # torch.compile, channels_last

--compiled is the path a performance-minded PyTorch user runs: the model
in channels_last, its forward pass and loss (with the backward AOTAutograd
derives) and the optimizer step each through torch.compile (inductor),
shapes static; inference compiled frozen (inductor's freezing). Compiling
is not in the figures: compile_seconds is the time the warm-up steps took
beyond as many timed steps, recompiles included (a study compiles once per
run, or loads inductor's cache).

Held to AVX2 (docs/BENCHMARK.md): with ONEDNN_MAX_CPU_ISA=AVX2 the code
inductor generates is held to 256-bit vectors too (its simdlen). Not
through ATEN_CPU_CAPABILITY=avx2: under it, torch 2.15's compiled backward
hands aten's pooling gradient garbage indices ("index ... is out of bounds").
"""
import argparse
import copy
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 10


def ste(x, q):
    """q in the forward pass, gradient 1 to x in the backward pass (kdtui's `x + (q - x).detach()`)."""
    return x + (q - x).detach()


def quantize_weights(w, bits):
    if bits >= 32:
        return w
    t = torch.tanh(w)
    unit = t / (t.abs().max() * 2.0 + 1e-8) + 0.5
    n = float((1 << bits) - 1)
    return ste(unit, torch.round(unit * n) / n) * 2.0 - 1.0


def quantize_activations(x, bits, a_range):
    if bits >= 32:
        return F.relu(x)
    n = float((1 << bits) - 1)
    clipped = x.clamp(0.0, a_range)
    return ste(clipped, torch.round(clipped * (n / a_range)) * (a_range / n))


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, w_bits, a_bits, a_range):
        super().__init__()
        # kdtui: no bias (BatchNorm follows), BatchNorm momentum 0.1, eps 1e-5
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.w_bits, self.a_bits, self.a_range = w_bits, a_bits, a_range

    def forward(self, x):
        x = F.conv2d(x, quantize_weights(self.conv.weight, self.w_bits), None, 1, 1)
        return quantize_activations(self.norm(x), self.a_bits, self.a_range)


class Cnn(nn.Module):
    POOL_AFTER = (0, 2, 4)

    def __init__(self, widths, hidden, w_bits, a_bits, first_last_bits, a_range):
        super().__init__()
        w1, w2, w3 = widths
        layers = [(3, w1), (w1, w2), (w2, w2), (w2, w3), (w3, w3)]
        self.blocks = nn.ModuleList(
            ConvBlock(i, o, first_last_bits if k == 0 else w_bits, a_bits, a_range) for k, (i, o) in enumerate(layers)
        )
        self.hidden = nn.Linear(w3 * 16, hidden, bias=False)
        self.hidden_norm = nn.BatchNorm1d(hidden, eps=1e-5, momentum=0.1)
        self.classifier = nn.Linear(hidden, CLASSES)
        self.w_bits, self.a_bits, self.a_range, self.last_bits = w_bits, a_bits, a_range, first_last_bits

    def forward(self, x):
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k in self.POOL_AFTER:
                x = F.max_pool2d(x, 2, 2)
        x = torch.flatten(x, 1)
        x = F.linear(x, quantize_weights(self.hidden.weight, self.w_bits))
        x = quantize_activations(self.hidden_norm(x), self.a_bits, self.a_range)
        return F.linear(x, quantize_weights(self.classifier.weight, self.last_bits), self.classifier.bias)


class Deploy(nn.Module):
    """The trained student for int8 post-training quantization: its
    quantized weights as plain float weights, BatchNorm, and its activation
    quantizer's clip as Hardtanh(0, a_range) (the rounding to 2^k levels is
    the int8 activations' own)."""

    def __init__(self, m, a_range):
        super().__init__()
        self.convs, self.norms, self.acts = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for b in m.blocks:
            conv = nn.Conv2d(b.conv.in_channels, b.conv.out_channels, 3, padding=1, bias=False)
            conv.weight.data = quantize_weights(b.conv.weight, b.w_bits).detach().clone()
            self.convs.append(conv)
            self.norms.append(copy.deepcopy(b.norm))
            self.acts.append(nn.Hardtanh(0.0, a_range))
        self.hidden = nn.Linear(m.hidden.in_features, m.hidden.out_features, bias=False)
        self.hidden.weight.data = quantize_weights(m.hidden.weight, m.w_bits).detach().clone()
        self.hidden_norm = copy.deepcopy(m.hidden_norm)
        self.hidden_act = nn.Hardtanh(0.0, a_range)
        self.classifier = nn.Linear(m.classifier.in_features, CLASSES)
        self.classifier.weight.data = quantize_weights(m.classifier.weight, m.last_bits).detach().clone()
        self.classifier.bias.data = m.classifier.bias.detach().clone()

    def forward(self, x):
        for k in range(len(self.convs)):
            x = self.acts[k](self.norms[k](self.convs[k](x)))
            if k in Cnn.POOL_AFTER:
                x = F.max_pool2d(x, 2, 2)
        x = torch.flatten(x, 1)
        x = self.hidden_act(self.hidden_norm(self.hidden(x)))
        return self.classifier(x)


def int8_student(model, a_range, a_bits, calibration):
    """torch.ao post-training static quantization (FX graph mode, x86
    backend) of the trained student, calibrated on `calibration`
    (normalised images). The activations after each clip get the student's
    own grid (scale a_range / (2^k - 1), zero point 0), so int8 holds its
    codes; the rest are the x86 defaults."""
    import warnings

    from torch.ao.quantization import FixedQParamsObserver, QConfig, default_per_channel_weight_observer
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    warnings.filterwarnings("ignore")
    torch.backends.quantized.engine = "x86"
    deploy = Deploy(model, a_range).eval()
    grid = FixedQParamsObserver.with_args(
        scale=a_range / ((1 << a_bits) - 1), zero_point=0, dtype=torch.quint8, quant_min=0, quant_max=255
    )
    mapping = get_default_qconfig_mapping("x86").set_object_type(
        nn.Hardtanh, QConfig(activation=grid, weight=default_per_channel_weight_observer)
    )
    prepared = prepare_fx(deploy, mapping, (calibration[:1],))
    with torch.inference_mode():
        for chunk in calibration.split(256):
            prepared(chunk)
    return convert_fx(prepared)


def cross_entropy(logits, target, temperature):
    return -(target * F.log_softmax(logits / temperature, dim=1)).sum(1).mean()


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["teacher", "student"], required=True)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads on the CPU")
    p.add_argument("--widths", default="32,64,128")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--w-bits", type=int, default=2)
    p.add_argument("--a-bits", type=int, default=2)
    p.add_argument("--first-last-bits", type=int, default=32)
    p.add_argument("--a-range", type=float, default=3.0)
    p.add_argument("--temperature", type=float, default=15.0, help="the student's hard_soft loss")
    p.add_argument("--soft-weight", type=float, default=None, help="c of hard_soft; default T^2")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--weight-decay-mode", choices=["l2", "decoupled"], default="decoupled",
                   help="l2: Adam with decay in the gradient; decoupled: AdamW")
    p.add_argument("--adam-epsilon", type=float, default=1e-8)
    p.add_argument("--train-images", type=int, default=2048)
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0, help="least time measured per phase")
    p.add_argument("--compiled", action="store_true", help="torch.compile (inductor) and channels_last; see above")
    a = p.parse_args()
    if a.compiled:
        # Compiling the step, the optimizer, and the optimizer again once
        # Adam has state: all before the timed steps, with steps to spare.
        a.warmup_steps = max(a.warmup_steps, 5)
    # At least one batch of each kind, or the timing loops would have nothing to run.
    a.train_images = max(a.train_images, a.batch_size, a.eval_batch_size)

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    device = torch.device(a.device)
    if a.model == "teacher":
        model = Cnn([int(w) for w in a.widths.split(",")], a.hidden, 32, 32, 32, 1.0)
    else:
        model = Cnn([int(w) for w in a.widths.split(",")], a.hidden, a.w_bits, a.a_bits, a.first_last_bits, a.a_range)
    model = model.to(device)
    layout = torch.channels_last if a.compiled else torch.contiguous_format
    model = model.to(memory_format=layout)
    # kdtui's Adam ([train] weight_decay_mode): decoupled decay is torch's AdamW, l2 its Adam.
    adam = torch.optim.AdamW if a.weight_decay_mode == "decoupled" else torch.optim.Adam
    optim = adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=a.adam_epsilon, weight_decay=a.weight_decay)

    # The data pipeline is part of a step in kdtui (bytes -> normalised batch), so here too.
    gen = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (a.train_images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, CLASSES, (a.train_images,), generator=gen)
    soft = torch.softmax(torch.randn(a.train_images, CLASSES, generator=gen) / a.temperature, dim=1)
    mean = torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1)
    c = a.temperature**2 if a.soft_weight is None else a.soft_weight

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def batch(idx):
        x = ((images[idx].float() / 255.0 - mean) / std).to(device, non_blocking=True)
        return x.contiguous(memory_format=layout), labels[idx].to(device), soft[idx].to(device)

    def loss_and_hits(x, y, q):
        logits = model(x)
        onehot = F.one_hot(y, CLASSES).float()
        loss = cross_entropy(logits, onehot, 1.0)
        if a.model == "student":
            # hard_soft: CE(z, gt) + c * CE(softmax(z / T), q_T)
            loss = loss + c * cross_entropy(logits, q, a.temperature)
        return loss, (logits.argmax(1) == y).sum()

    def optimizer_step():
        optim.step()

    if a.compiled and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper().startswith("AVX2"):
        from torch._inductor import config as inductor
        inductor.cpp.simdlen = 256

    def compiled(f):
        return torch.compile(f, dynamic=False) if a.compiled else f

    forward, update = compiled(loss_and_hits), compiled(optimizer_step)

    def train_step(idx):
        x, y, q = batch(idx)
        loss, hits = forward(x, y, q)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        update()
        # kdtui reads the loss and the hits every step (NaN check, metrics).
        return loss.item(), hits.item()

    # Seconds the warm-up steps took beyond as many timed ones: with
    # --compiled, compiling (and recompiling, e.g. once Adam has state).
    warmup_excess = []

    def timed(step, size):
        order = torch.randperm(a.train_images, generator=gen)
        starts = range(0, a.train_images - size + 1, size)
        t0, warm = time.perf_counter(), 0
        for k, s in zip(range(a.warmup_steps), starts):
            step(order[s : s + size])
            warm += size
        sync()
        warmup_seconds = time.perf_counter() - t0
        images_done, t0 = 0, time.perf_counter()
        while True:
            for s in starts:
                step(order[s : s + size])
                images_done += size
                elapsed = time.perf_counter() - t0
                if elapsed >= a.seconds:
                    sync()
                    ips = images_done / (time.perf_counter() - t0)
                    warmup_excess.append(max(0.0, warmup_seconds - warm / ips))
                    return ips

    model.train()
    train_ips = timed(train_step, a.batch_size)

    model.eval()
    # Compiled again for inference: eval mode and each batch size are graphs
    # of their own; frozen, as inductor's CPU inference is meant to run (the
    # weights folded in as constants, convolutions on prepacked weights).
    if a.compiled:
        from torch._inductor import config as inductor

        inductor.freezing = True
    infer = compiled(model)

    def infer_step(idx):
        with torch.inference_mode():
            x, _, _ = batch(idx)
            infer(x).argmax(1).cpu()

    infer_ips = timed(infer_step, a.eval_batch_size)
    infer_1_ips = timed(infer_step, 1)

    # The student as int8 (CPU, quantized weights and activations only).
    # With --compiled, none: torch 2.15's compiled int8 path (PT2E with
    # the x86 inductor quantizer) lives in the separate torchao package.
    int8 = {}
    if a.model == "student" and device.type == "cpu" and a.w_bits < 32 and a.a_bits < 32 and not a.compiled:
        everything = ((images.float() / 255.0 - mean) / std)
        qmodel = int8_student(model, a.a_range, a.a_bits, everything)
        with torch.inference_mode():
            same = (qmodel(everything).argmax(1) == model(everything).argmax(1)).float().mean().item()

        def int8_step(idx):
            with torch.inference_mode():
                x, _, _ = batch(idx)
                qmodel(x).argmax(1)

        int8 = {
            "int_infer_images_per_sec": round(timed(int8_step, a.eval_batch_size), 2),
            "int_infer_batch1_images_per_sec": round(timed(int8_step, 1), 2),
            "int_agreement": same,
            "int_engine": f"torch.ao int8, FX post-training static, {torch.backends.quantized.engine} backend",
        }

    out = {
        "side": "pytorch",
        "model": a.model,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "version": f"torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "train_images_per_sec": round(train_ips, 2),
        "infer_images_per_sec": round(infer_ips, 2),
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_device_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "infer_batch1_images_per_sec": round(infer_1_ips, 2),
        "compiled": a.compiled,
        "compile_seconds": round(sum(warmup_excess), 2) if a.compiled else None,
        **int8,
    }
    assert math.isfinite(train_ips) and math.isfinite(infer_ips)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
