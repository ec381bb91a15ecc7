"""The learned container (bench/container.py) on its own: round trips, header sizes, the
limits ``pack`` enforces, and minimal varints. (Files decoded by a codec, corrupted ones
included, are in tests/codecs/test_learned.py; forged ones in tests/helpers/lic_forge.py.)"""

from __future__ import annotations

import pytest

from bench.container import pack, unpack, uvarint


# --------------------------------------------------------------------------- container
def test_container_roundtrip_and_header_size(monkeypatch):
    monkeypatch.setenv("BENCH_MAX_PIXELS", str(2**32))     # the largest sides the format holds, under the cap
    data = pack(3, 45, 67, [b"zz", b"yyyy"], variant=5)
    assert len(data) == 8 + 5 + 6
    c = unpack(data)
    assert (c.model_id, c.height, c.width, c.streams, c.variant, c.header_size) == (3, 45, 67, (b"zz", b"yyyy"), 5, 13)
    # a Kodak-sized file at 0.075 bpp: 16 bytes of header (version 1 had 32, version 2 18)
    assert unpack(pack(0, 512, 768, [b"z" * 150, b"y" * 3500])).header_size == 16
    big = pack(2**16 - 1, 2**16, 2**16, [b"z" * 200, b"y" * 20000], variant=31)
    assert unpack(big).model_id == 2**16 - 1 and unpack(big).streams[1] == b"y" * 20000 and unpack(big).variant == 31
    # the last stream runs to the end of the file: empty ones and one stream or eight round-trip
    for streams in ([b""], [b"a"] * 8, [b"", b"", b"y"], [b"z", b""]):
        assert unpack(pack(0, 1, 1, streams)).streams == tuple(streams)
    for bad in [(0, 0, 67), (2**16, 45, 67), (0, 45, 2**16 + 1)]:
        with pytest.raises(ValueError):
            pack(*bad, [b"z", b"y"])
    for streams, variant in [([], 0), ([b"s"] * 9, 0), ([b"z"], 32), ([b"z"], -1)]:
        with pytest.raises(ValueError):
            pack(0, 1, 1, streams, variant)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**16, 2**32 - 1])
def test_varints_are_minimal_and_read_back(value):
    from bench.container import _read_uvarint

    raw = uvarint(value)
    assert len(raw) == max(1, -(-value.bit_length() // 7))
    assert _read_uvarint(raw + b"x", 0, "v", 2**32 - 1) == (value, len(raw))
