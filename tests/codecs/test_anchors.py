"""The literature's anchors, ``hevc`` (x265 through libheif) and ``jpeg2000`` (OpenJPEG through
imagecodecs): round trips on a Kodak crop, the settings their manifests promise (4:4:4,
constant QP, a raw codestream), the header parsers that guard their decoders (HEIF item
sizes, the HEVC SPS, the JPEG 2000 SIZ marker and tile-parts), and a forged SPS refused
before decoding.

Their hostile-file and forged-size checks live with the other codecs' (tests/helpers/fuzz.py,
tests/test_limits.py); CompressAI's published points are checked by
``benchmarks/anchors_check.py``.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bench.codec import BitstreamError
from bench.codecs.classical import heif_coded_sizes, hevc_sps_size, j2k_check_tile_parts, j2k_size
from bench.paths import SUBMISSIONS_DIR
from tests.helpers.coding import decode, encode
from tests.helpers.images import kodak_crop

CROP = (300, 200, 364, 248)          # 64 × 48


def codec(name: str):
    from bench.submission import load_manifest

    return load_manifest(SUBMISSIONS_DIR / name / "submission.toml").make_codec()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return kodak_crop("kodim23.png", CROP)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name,low,high", [("hevc", 45, 22), ("jpeg2000", 26.0, 40.0)])
def test_round_trip_and_the_knob(name: str, low, high, image):
    """A uint8 image of the original's size, decoded the same twice, declared in the header;
    the knob's high-rate end costs more bytes and gives a higher PSNR."""
    c = codec(name)
    small, big = encode(c, image, low), encode(c, image, high)
    a, b = decode(c, small), decode(c, big)
    assert a.shape == b.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(decode(c, small), a)
    assert c.declared_size(small) == image.shape[:2]
    assert len(big) > len(small) and psnr(b, image) > psnr(a, image) + 3
    assert psnr(b, image) > 30
    assert set(c.versions()) >= ({"libheif", "x265", "libde265"} if name == "hevc" else {"openjpeg"})


def test_hevc_codes_444_at_a_constant_qp(image):
    """The manifest's promise: 4:4:4 chroma (the SPS's chroma_format_idc) at constant QP, BPG's
    rate control (one QP gives the same file twice)."""
    data = encode(codec("hevc"), image, 30)
    sps = _sps_nals(data)
    assert len(sps) == 1
    bits = _bits(_rbsp(sps[0]))
    pos = 2 * 8 + 4 + 3 + 1 + 96                  # after the NAL header and the general profile/tier/level
    _, pos = _ue(bits, pos)                       # sps_seq_parameter_set_id
    chroma, _ = _ue(bits, pos)
    assert chroma == 3                            # 4:4:4
    assert encode(codec("hevc"), image, 30) == data


@pytest.mark.parametrize("h,w", [(1, 1), (16, 16), (16, 300), (31, 40)])
def test_hevc_codes_images_below_32_px(h: int, w: int, image):
    """libheif codes a side under 32 px with 16-px CTUs, where x265 refuses placebo's TU depth 4:
    the codec caps it at 3 there and codes the image."""
    img = np.resize(image, (h, w, 3))
    out = decode(codec("hevc"), encode(codec("hevc"), img, 30))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_j2k_is_a_raw_codestream_with_its_size(image):
    data = encode(codec("jpeg2000"), image, 32.0)
    assert data[:4] == b"\xff\x4f\xff\x51" and data[-2:] == b"\xff\xd9"
    assert j2k_size(data) == (48, 64)
    j2k_check_tile_parts(data)


# --------------------------------------------------------------------------- header parsers
def test_heif_sizes_include_the_coded_size(image):
    """x265 codes at least 64 rows (libheif pads), so the SPS and ispe say 64×64; the clean
    aperture crops to 48 rows, which is the size libheif reports."""
    data = encode(codec("hevc"), image, 40)
    assert sorted(heif_coded_sizes(data)) == [("HEIF ispe", 64, 64), ("HEVC SPS", 64, 64)]
    assert codec("hevc").declared_size(data) == (48, 64)


@pytest.mark.parametrize("h,w,sub_layers", [(48, 64, 0), (30000, 30000, 0), (8192, 8193, 3), (1, 2**20, 7)])
def test_sps_size_parser(h: int, w: int, sub_layers: int):
    """Synthetic SPS NAL units (emulation-prevention bytes included where zeros run) read back."""
    assert hevc_sps_size(_make_sps(h, w, sub_layers)) == (h, w)


def test_sps_parser_refuses_cut_or_endless_codes():
    with pytest.raises(BitstreamError):
        hevc_sps_size(_make_sps(64, 64, 0)[:14])
    with pytest.raises(BitstreamError, match="exp-Golomb"):
        hevc_sps_size(b"\x42\x01" + b"\x01" + b"\x00" * 12 + b"\x80" + b"\x00\x00\x03" * 20)


@pytest.mark.parametrize("h,w", [(8193, 8192), (30000, 30000), (65536, 65536)])
def test_forged_sps_is_refused_before_decoding(h: int, w: int, image):
    """A HEIF file whose SPS alone claims a huge picture (ispe and libheif's size untouched):
    refused by the pixel cap, not handed to libde265."""
    c = codec("hevc")
    forged = forge_sps(encode(c, image, 40), h, w)
    assert ("HEVC SPS", h, w) in heif_coded_sizes(forged)
    with pytest.raises(BitstreamError, match="HEVC SPS.*(above the pixel limit|forged or corrupted)"):
        decode(c, forged)


def test_the_forger_keeps_the_file_well_formed(image):
    """Rewriting the SPS with its own size gives the file back, byte for byte; another plausible
    size still parses (libheif then decodes it or refuses it, nothing else)."""
    c = codec("hevc")
    data = encode(c, image, 40)
    assert forge_sps(data, 64, 64) == data
    other = forge_sps(data, 128, 96)
    assert ("HEVC SPS", 128, 96) in heif_coded_sizes(other)
    try:
        out = decode(c, other)
        assert out.dtype == np.uint8 and out.ndim == 3
    except BitstreamError:
        pass


def test_j2k_truncated_or_padded_is_refused(image):
    """OpenJPEG decodes a cut codestream to a blurred image without a word: the tile-part
    walk refuses it, and bytes after the EOC marker."""
    c = codec("jpeg2000")
    data = encode(c, image, 36.0)
    for bad in (data[:-2], data[: len(data) // 2] + b"\xff\xd9", data + b"\0", data + data):
        with pytest.raises(BitstreamError, match="truncated or padded|cut off|tile-part"):
            decode(c, bad)


# --------------------------------------------------------------------------- the forger's tools
def _rbsp(nal: bytes) -> bytes:
    return nal[:2] + nal[2:].replace(b"\x00\x00\x03", b"\x00\x00")


def _ebsp(rbsp: bytes) -> bytes:
    """Emulation prevention: a 0x03 after two zero bytes when the next byte is ≤ 3."""
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _bits(data: bytes) -> str:
    return "".join(f"{b:08b}" for b in data)


def _ue(bits: str, pos: int) -> tuple[int, int]:
    zeros = 0
    while bits[pos + zeros] == "0":
        zeros += 1
    return int(bits[pos + zeros:pos + 2 * zeros + 1], 2) - 1, pos + 2 * zeros + 1


def _ue_bits(v: int) -> str:
    code = f"{v + 1:b}"
    return "0" * (len(code) - 1) + code


def _make_sps(h: int, w: int, sub_layers: int) -> bytes:
    """An SPS NAL unit up to its picture size (VPS 0, 4:4:4), all profile bits zero."""
    bits = "0" + "100001" + "000000" + "001"      # NAL header: forbidden bit, type 33, layer 0, tid + 1
    bits += "0000" + f"{sub_layers:03b}" + "1" + "0" * 96
    bits += "11" * sub_layers + ("00" * (8 - sub_layers) if sub_layers else "") + "0" * 96 * sub_layers
    bits += _ue_bits(0) + _ue_bits(3) + "0" + _ue_bits(w) + _ue_bits(h) + "1"
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return raw[:2] + _ebsp(raw[2:])


def _children(data: bytes, start: int, end: int):
    pos = start
    while pos < end:
        size = struct.unpack_from(">I", data, pos)[0]
        yield data[pos + 4:pos + 8], pos, size
        pos += size


def _path_to(data: bytes, path: list[bytes]) -> list[int]:
    """Byte offsets of the boxes along ``path`` from the top level (meta is a full box)."""
    offsets, start, end = [], 0, len(data)
    for kind in path:
        pos, size = next((p, s) for k, p, s in _children(data, start, end) if k == kind)
        offsets.append(pos)
        start, end = pos + 8 + (4 if kind == b"meta" else 0), pos + size
    return offsets


def _sps_nals(data: bytes) -> list[bytes]:
    hvcc = _path_to(data, [b"meta", b"iprp", b"ipco", b"hvcC"])[-1]
    box = data[hvcc + 8:hvcc + struct.unpack_from(">I", data, hvcc)[0]]
    pos, out = 23, []
    for _ in range(box[22]):
        nal_type, count = box[pos] & 0x3F, struct.unpack_from(">H", box, pos + 1)[0]
        pos += 3
        for _ in range(count):
            n = struct.unpack_from(">H", box, pos)[0]
            if nal_type == 33:
                out.append(box[pos + 2:pos + 2 + n])
            pos += 2 + n
    return out


def forge_sps(data: bytes, h: int, w: int) -> bytes:
    """The HEIF file with its SPS's picture size rewritten: the SPS re-coded (exp-Golomb, stop
    bit, emulation prevention), the enclosing boxes' sizes and the iloc's offsets into mdat moved."""
    old = _sps_nals(data)[0]
    bits = _bits(_rbsp(old))
    pos = 2 * 8 + 4
    sub_layers = int(bits[pos:pos + 3], 2)
    pos += 3 + 1 + 96
    flags = [(bits[pos + 2 * i], bits[pos + 2 * i + 1]) for i in range(sub_layers)]
    pos += 16 if sub_layers else 0
    pos += sum(88 * (p == "1") + 8 * (lv == "1") for p, lv in flags)
    _, pos = _ue(bits, pos)                        # sps_seq_parameter_set_id
    chroma, pos = _ue(bits, pos)
    pos += chroma == 3                             # separate_colour_plane_flag
    start = pos
    _, pos = _ue(bits, pos)
    _, pos = _ue(bits, pos)
    new_bits = bits[:start] + _ue_bits(w) + _ue_bits(h) + bits[pos:bits.rindex("1") + 1]   # with the stop bit
    new_bits += "0" * (-len(new_bits) % 8)
    raw = int(new_bits, 2).to_bytes(len(new_bits) // 8, "big")
    new = raw[:2] + _ebsp(raw[2:])
    delta = len(new) - len(old)
    at = data.index(old)
    out = bytearray(data[:at - 2] + struct.pack(">H", len(new)) + new + data[at + len(old):])
    for off in _path_to(data, [b"meta", b"iprp", b"ipco", b"hvcC"]):
        struct.pack_into(">I", out, off, struct.unpack_from(">I", out, off)[0] + delta)
    _shift_iloc(out, _path_to(data, [b"meta", b"iloc"])[-1], delta)
    return bytes(out)


def _shift_iloc(out: bytearray, iloc: int, delta: int) -> None:
    """Move every file-offset extent of the iloc box at ``iloc`` by ``delta`` bytes (mdat moved)."""
    def field(at: int, n: int, add: int = 0) -> int:
        value = int.from_bytes(out[at:at + n], "big")
        if add and n:
            out[at:at + n] = (value + add).to_bytes(n, "big")
        return value

    version = out[iloc + 8]
    offset_size, length_size = out[iloc + 12] >> 4, out[iloc + 12] & 15
    base_size, index_size = out[iloc + 13] >> 4, out[iloc + 13] & 15 if version in (1, 2) else 0
    count = 2 if version < 2 else 4
    items, pos = field(iloc + 14, count), iloc + 14 + count
    for _ in range(items):
        pos += count                               # item_ID
        method = field(pos, 2) & 15 if version in (1, 2) else 0
        pos += (2 if version in (1, 2) else 0) + 2  # construction_method, data_reference_index
        if method == 0 and not offset_size:        # file offset = base offset + extent offset
            field(pos, base_size, delta)
        pos += base_size
        extents, pos = field(pos, 2), pos + 2
        for _ in range(extents):
            pos += index_size
            if method == 0:
                field(pos, offset_size, delta)
            pos += offset_size + length_size
