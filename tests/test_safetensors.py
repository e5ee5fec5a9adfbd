"""The hand-written safetensors reader: round trips, and every defect is a one-line WeightsError naming the file."""
import json
import random
import struct

import pytest
import torch

from model import WeightsError, load_safetensors


def _write(path, header, data=b"", length=None):
    """A safetensors file from a header (dict, or raw bytes) and the data bytes."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _valid(path):
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.tensor([1, -2, 3], dtype=torch.int64)
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "b": {"dtype": "I64", "shape": [3], "data_offsets": [24, 48]},
              "empty": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [48, 48]}}
    return _write(path, header, a.numpy().tobytes() + b.numpy().tobytes()), a, b


def test_reads_hand_written_file(tmp_path):
    path, a, b = _valid(tmp_path / "ok.safetensors")
    sd = load_safetensors(path)
    assert torch.equal(sd["a"], a) and torch.equal(sd["b"], b) and sd["empty"].shape == (0, 4)
    assert sd["empty"].dtype == torch.bfloat16 and "__metadata__" not in sd
    sd["a"] += 1  # copy-on-write: tensors are writable, the file is untouched
    assert torch.equal(load_safetensors(path)["a"], a)


def test_matches_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(0)
    tensors = {str(dt): (torch.randn(3, 5, generator=g) * 50).to(dt) for dt in
               (torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.int64, torch.int32,
                torch.int16, torch.int8, torch.uint8, torch.bool)}
    tensors["scalar"] = torch.tensor(2.5)
    st.save_file(tensors, tmp_path / "all.safetensors", metadata={"format": "pt"})
    sd = load_safetensors(tmp_path / "all.safetensors")
    assert sd.keys() == tensors.keys()
    for k, v in tensors.items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v)


def test_misaligned_data_is_copied(tmp_path):
    x = torch.tensor([1.5, -2.0], dtype=torch.float32)
    header = b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'  # 55 bytes: data starts unaligned
    sd = load_safetensors(_write(tmp_path / "odd.safetensors", header, x.numpy().tobytes()))
    assert torch.equal(sd["x"], x)


T = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
CORRUPT = {
    "tiny": (b"", None, b"", "truncated"),
    "truncated": (json.dumps({"x": T}).encode(), None, b"\0" * 4, "outside"),
    "header_past_end": (b"{}", 1000, b"", "header length"),
    "huge_header": (b"{}", 2**63, b"", "header length"),
    "offsets_out_of_range": ({"x": {**T, "data_offsets": [4, 12]}}, None, b"\0" * 8, "outside"),
    "negative_offset": ({"x": {**T, "data_offsets": [-8, 0]}}, None, b"\0" * 8, "outside"),
    "reversed_offsets": ({"x": {**T, "shape": [0], "data_offsets": [8, 0]}}, None, b"\0" * 8, "outside"),
    "overlap": ({"x": T, "y": {**T, "data_offsets": [4, 12]}}, None, b"\0" * 12, "overlap"),
    "wrong_span": ({"x": {**T, "shape": [3]}}, None, b"\0" * 8, "needs 12 bytes"),
    "wrong_span_dtype": ({"x": {**T, "dtype": "F64"}}, None, b"\0" * 8, "needs 16 bytes"),
    "unknown_dtype": ({"x": {**T, "dtype": "F33"}}, None, b"\0" * 8, "unknown dtype"),
    "dtype_not_string": ({"x": {**T, "dtype": ["F32"]}}, None, b"\0" * 8, "unknown dtype"),
    "endless_number": (b'{"x": 1' + b"1" * 5000 + b"}", None, b"", "JSON"),
    "deep_nesting": (b"[" * 100000, None, b"", "JSON"),
    "negative_shape": ({"x": {**T, "shape": [-2]}}, None, b"\0" * 8, "shape"),
    "float_shape": ({"x": {**T, "shape": [2.0]}}, None, b"\0" * 8, "shape"),
    "bool_shape": ({"x": {**T, "shape": [True, 2]}}, None, b"\0" * 8, "shape"),
    "shape_not_list": ({"x": {**T, "shape": 2}}, None, b"\0" * 8, "shape"),
    "offsets_not_pair": ({"x": {**T, "data_offsets": [0]}}, None, b"\0" * 8, "outside"),
    "entry_not_object": ({"x": [1, 2]}, None, b"", "not an object"),
    "non_utf8": (b'{"\xff\xfe": 1}', None, b"", "UTF-8"),
    "not_json": (b"{'x': 1}", None, b"", "JSON"),
    "duplicate": (b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                  b'"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', None, b"\0" * 8, "duplicate"),
    "not_object": (b"[1, 2, 3]", None, b"", "not a JSON object"),
    "newline_in_name": ({"a\nb": {**T, "dtype": "X"}}, None, b"\0" * 8, "unknown dtype"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_raise_one_line_naming_the_file(tmp_path, case):
    header, length, data, words = CORRUPT[case]
    path = tmp_path / f"{case}.safetensors"
    if case == "tiny":
        path.write_bytes(b"\1\2\3")
    else:
        _write(path, header, data, length)
    with pytest.raises(WeightsError) as e:
        load_safetensors(path)
    msg = str(e.value)
    assert "\n" not in msg and path.name in msg and words in msg, msg
    assert isinstance(e.value, ValueError)


def test_missing_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="nothing.safetensors"):
        load_safetensors(tmp_path / "nothing.safetensors")


def test_fuzz_mutations_load_or_raise_weights_error(tmp_path):
    path, _, _ = _valid(tmp_path / "seed.safetensors")
    good = path.read_bytes()
    rng = random.Random(0)
    target = tmp_path / "fuzz.safetensors"
    outcomes = {"loaded": 0, "error": 0}
    for i in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(["flip", "byte", "insert", "delete", "truncate"])
            at = rng.randrange(len(data) + 1) if op == "insert" else rng.randrange(max(len(data), 1))
            if op == "flip" and data:
                data[at] ^= 1 << rng.randrange(8)
            elif op == "byte" and data:
                data[at] = rng.choice(b'{}[]",:0123456789-\xff\0 ')
            elif op == "insert":
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            elif op == "delete":
                del data[at:at + rng.randint(1, 4)]
            else:
                del data[at:]
        target.write_bytes(bytes(data))
        try:
            sd = load_safetensors(target)
        except WeightsError as e:
            assert "\n" not in str(e) and target.name in str(e)
            outcomes["error"] += 1
        else:
            for t in sd.values():  # the tensors are real: usable, not views past the end
                t.clone()
            outcomes["loaded"] += 1
    assert outcomes["error"] > 100 and outcomes["loaded"] > 10, outcomes
