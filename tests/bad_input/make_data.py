#!/usr/bin/env python3
"""Writes the broken data sets under data/ that tests/bad_input.rs feeds to
kdtui. Run from this folder; the outputs are committed, so the tests need no
Python. Each case folder holds the files and a case.toml: a [data] section
(the test adds `dir`: this folder, or `# dir:` below it) and `# expect:`
lines the error must contain."""

import gzip
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def pad8(b):
    return b + b"\0" * (-len(b) % 8)


def element(ty, data):
    return pad8(struct.pack("<II", ty, len(data)) + data)


def matrix(name, cls, dims, ty, data):
    body = element(6, struct.pack("<II", cls, 0))  # array flags
    body += element(5, struct.pack("<%di" % len(dims), *dims))
    body += element(1, name.encode())
    body += element(ty, data)
    return struct.pack("<II", 14, len(body)) + body


def compressed(m):
    z = zlib.compress(m)
    return struct.pack("<II", 15, len(z)) + z


def mat(*elements):
    text = b"MATLAB 5.0 MAT-file, kdtui bad-input fixture".ljust(116, b" ")
    return text + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM" + b"".join(elements)


UINT8, DOUBLE = 9, 6
MI_UINT8, MI_DOUBLE = 2, 9


def x_u8(n, channels=3):
    return matrix("X", UINT8, [32, 32, channels, n], MI_UINT8, bytes((i * 7) % 256 for i in range(32 * 32 * channels * n)))


def y_u8(labels):
    return matrix("y", UINT8, [len(labels), 1], MI_UINT8, bytes(labels))


GOOD_MAT = mat(compressed(x_u8(2)), compressed(y_u8([1, 10])))


def idx(dims, data, ty=0x08):
    return bytes([0, 0, ty, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def images(n, h=28, w=28):
    return idx([n, h, w], bytes((i * 3) % 256 for i in range(n * h * w)))


def labels(values):
    return idx([len(values)], bytes(values))


def case(name, files, data_section, expect, subdir=None):
    d = os.path.join(HERE, "data", name)
    os.makedirs(d, exist_ok=True)
    for f, content in files.items():
        with open(os.path.join(d, f), "wb") as fh:
            fh.write(content)
    with open(os.path.join(d, "case.toml"), "w") as fh:
        for e in expect:
            fh.write("# expect: %s\n" % e)
        if subdir:
            fh.write("# dir: %s\n" % subdir)
        fh.write("[data]\n%s\n" % data_section)


SVHN = 'source = "svhn"'
IDX = 'source = "idx"'
GOOD_IDX = {
    "train-images-idx3-ubyte": images(2),
    "train-labels-idx1-ubyte": labels([3, 4]),
}

case("mat-truncated", {"train_32x32.mat": GOOD_MAT, "test_32x32.mat": GOOD_MAT[: len(GOOD_MAT) - 300]}, SVHN,
     ["test_32x32.mat", "truncated"])
bad_zlib = bytearray(GOOD_MAT)
for i in range(140, 400):
    bad_zlib[i] ^= 0x5A
case("mat-corrupt-zlib", {"train_32x32.mat": bytes(bad_zlib), "test_32x32.mat": GOOD_MAT}, SVHN,
     ["train_32x32.mat", "does not inflate"])
case("mat-no-y", {"train_32x32.mat": mat(compressed(x_u8(2))), "test_32x32.mat": GOOD_MAT}, SVHN,
     ["train_32x32.mat", "no variable `y`"])
case("mat-no-x", {"train_32x32.mat": GOOD_MAT, "test_32x32.mat": mat(compressed(y_u8([1, 2])))}, SVHN,
     ["test_32x32.mat", "no variable `X`"])
case("mat-x-shape", {"train_32x32.mat": mat(compressed(x_u8(2, channels=1)), compressed(y_u8([1, 2]))),
                     "test_32x32.mat": GOOD_MAT}, SVHN,
     ["train_32x32.mat", "`X` has shape [32, 32, 1, 2], expected [32, 32, 3, N]"])
x_double = matrix("X", DOUBLE, [32, 32, 3, 1], MI_DOUBLE, struct.pack("<%dd" % 3072, *([0.5] * 3072)))
case("mat-x-dtype", {"train_32x32.mat": mat(x_double, y_u8([1])), "test_32x32.mat": GOOD_MAT}, SVHN,
     ["train_32x32.mat", "`X` is not uint8"])
case("mat-label-range", {"train_32x32.mat": mat(compressed(x_u8(2)), compressed(y_u8([3, 11]))),
                         "test_32x32.mat": GOOD_MAT}, SVHN,
     ["train_32x32.mat", "label 11 of image 1 is outside 1..10"])
case("mat-y-count", {"train_32x32.mat": mat(compressed(x_u8(2)), compressed(y_u8([3, 4, 5]))),
                     "test_32x32.mat": GOOD_MAT}, SVHN,
     ["train_32x32.mat", "`y` has shape [3, 1], expected [2, 1]"])
case("mat-missing-test", {"train_32x32.mat": GOOD_MAT}, SVHN, ["test_32x32.mat is missing", "SVHN"])
case("mat-empty", {"train_32x32.mat": GOOD_MAT, "test_32x32.mat": mat(x_u8(0), y_u8([]))}, SVHN,
     ["test set is empty", "test_32x32.mat"])
case("mat-hdf5", {"train_32x32.mat": b"\x89HDF\r\n\x1a\n" + b"\0" * 600, "test_32x32.mat": GOOD_MAT}, SVHN,
     ["train_32x32.mat", "v7.3/HDF5"])

img = images(2)
case("idx-truncated", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": img[:-10], "t10k-labels-idx1-ubyte": labels([1, 2])}),
     IDX, ["t10k-images-idx3-ubyte", "truncated"])
case("idx-bad-magic", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": b"\x12\x34" + img[2:], "t10k-labels-idx1-ubyte": labels([1, 2])}),
     IDX, ["t10k-images-idx3-ubyte", "bad magic number"])
case("idx-dtype", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": idx([1, 2, 2], b"\0" * 16, ty=0x0D),
                                    "t10k-labels-idx1-ubyte": labels([1])}),
     IDX, ["t10k-images-idx3-ubyte", "element type 0x0d"])
case("idx-label-range", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": img, "t10k-labels-idx1-ubyte": labels([1, 12])}),
     IDX, ["t10k-labels-idx1-ubyte", "label 12 of item 1 is outside 0..9"])
case("idx-size-mismatch", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": images(2, 20, 20), "t10k-labels-idx1-ubyte": labels([1, 2])}),
     IDX, ["t10k-images-idx3-ubyte", "20x20", "28x28"])
case("idx-empty", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": images(0), "t10k-labels-idx1-ubyte": labels([])}),
     IDX, ["test set is empty", "t10k-images-idx3-ubyte"])
gz = gzip.compress(labels([1, 2]))
case("idx-gz-truncated", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": img, "t10k-labels-idx1-ubyte.gz": gz[: len(gz) // 2]}),
     IDX, ["t10k-labels-idx1-ubyte.gz", "gzip stream does not inflate"])
case("idx-missing-labels", dict(GOOD_IDX, **{"t10k-images-idx3-ubyte": img}),
     IDX, ["t10k-labels-idx1-ubyte is missing"])
case("missing-dir", {}, IDX, ["data directory", "nowhere", "does not exist"], subdir="nowhere")
