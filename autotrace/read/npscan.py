"""The reader's vectorized block path, used for large blocks when numpy is installed.

inspect-ai depends on numpy, so it is present wherever inspect writes traces; the
reader never needs it (``TraceScanner._scan_block`` does the same in pure Python,
about three times slower). Here a block of a few MiB is read with whole-array
operations and Python touches only the lines that change state across the block:
actions still open at its end, ends of actions opened before it, and anomalies.
An action that enters and exits inside the block costs no Python code at all.

``scan_block`` proves for each line what ``TraceScanner._scan_block`` proves (see its
docstring for why the byte checks are enough), pairs enter and end records by trace
id with a sort, and gives up, with the scanner untouched, on anything it cannot prove:
a trace id seen three times, an enter after its end, an id already open, a line that
may be an action record in another shape. The caller then reads the block the pure
Python way, so results never depend on which path ran.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np

# The byte patterns of the pure-Python block path: both paths prove the same facts.
from autotrace.read.reader import (
    _ACTION_KEY,
    _AGENT_MESSAGE,
    _EVENT_KEY,
    _HEAD,
    _LEVEL_KEY,
    _MESSAGE_KEY,
    TraceScanner,
)
from autotrace.read.reader import _EVENT_OF_CODE as _NAME_OF_CODE
from autotrace.read.reader import _TID_SEP as _SEP

_ENTER, _EXIT = ord("t"), ord("x")  # the third last byte of an event name tells it
_TID_WORDS = 4  # trace ids of up to 31 bytes are read here; longer ones the slow way
_TID_BYTES = 8 * _TID_WORDS
_PAD = b"\0" * (_TID_BYTES + 8)  # so that every 8-byte read near the block's end is inside
_PRIME = np.uint64(0x100000001B3)
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], np.uint64)  # k low bytes kept
_COLUMNS = np.arange(_TID_BYTES)


def _word(b: bytes) -> np.uint64:
    """The 8 bytes ``b`` as the little-endian word an 8-byte read of them gives."""
    return np.frombuffer(b, "<u8")[0]  # type: ignore[no-any-return]


_HEAD_WORDS = (_word(_HEAD[:8]), _word(_HEAD[-8:]))
_SEP_WORDS = (_word(_SEP[:8]), _word(_SEP[8:]))
_ACTION_WORDS = (_word(_ACTION_KEY[:8]), _word(_ACTION_KEY[-8:]))
# Per third last byte of an event name: the length of ', "event": "<event>' and the
# words at its start, at its start + 8 and at its end (together they cover it).
_EVENT_LEN = np.zeros(256, np.intp)
_EVENT_WORDS = np.zeros((3, 256), np.uint64)
for _code, _name in _NAME_OF_CODE.items():
    _key = _EVENT_KEY + _name.encode()
    _EVENT_LEN[_code] = len(_key)
    _EVENT_WORDS[:, _code] = (_word(_key[:8]), _word(_key[8:16]), _word(_key[-8:]))


def _hash(words: np.ndarray) -> np.ndarray:
    """A 64-bit FNV-style hash of each row of (k, _TID_WORDS) words (zero padded ids)."""
    h = np.zeros(len(words), np.uint64)
    for j in range(words.shape[1]):
        h ^= words[:, j]
        h *= _PRIME
    return h


class BlockScanner:
    """Reads blocks into a TraceScanner's state; owns the scratch arrays blocks reuse.

    Whole-block temporaries are written into preallocated arrays (``out=``): a fresh
    array of a few MiB per operation costs more in page faults than the operation.
    """

    def __init__(self) -> None:
        self._bytes = np.zeros(0, np.uint8)
        self._mask = np.zeros(0, bool)
        self._half = np.zeros(0, bool)
        # hash -> how many open ids have it (the scanner's open ids this path can read),
        # and whether the ordered path changed what is open since (then hash it again)
        self._open: dict[int, int] = {}
        self.stale = True

    def _masks(self, size: int) -> None:
        if self._mask.size < _whole_words(size):
            capacity = _whole_words(max(size, 1 << 20))
            self._mask = np.zeros(capacity, bool)
            self._half = np.zeros(capacity // 2, bool)

    def _where(self, a: np.ndarray, byte: int) -> np.ndarray:
        """Offsets of ``byte`` in ``a``."""
        mask = self._mask[: _whole_words(a.size)]
        np.equal(a, byte, out=mask[: a.size])
        mask[a.size :] = False
        return _sparse_nonzero(mask)

    def _count(self, a: np.ndarray, byte: int) -> int:
        mask = self._mask[: a.size]
        np.equal(a, byte, out=mask)
        return int(np.count_nonzero(mask))

    def _pairs(self, a: np.ndarray, first: bytes, second: bytes) -> np.ndarray:
        """Sorted offsets in ``a`` where the two bytes ``first`` or ``second`` start.

        Byte pairs are read as 16-bit numbers, at even and at odd offsets: half the
        elements of a byte-wise test, and one mask for both pairs.
        """
        codes = [int.from_bytes(pair, "little") for pair in (first, second)]
        found = []
        for parity in (0, 1):
            count = (a.size - parity) // 2
            pairs = a[parity : parity + 2 * count].view("<u2")
            mask = self._mask[: _whole_words(count)]
            other = self._half[:count]
            np.equal(pairs, codes[0], out=mask[:count])
            np.equal(pairs, codes[1], out=other)
            np.logical_or(mask[:count], other, out=mask[:count])
            mask[count:] = False
            found.append(_sparse_nonzero(mask) * 2 + parity)
        both = np.concatenate(found)
        both.sort()
        return both

    def scan(self, scanner: TraceScanner, block: bytes) -> bool:
        """Read ``block`` (whole lines, ending in a newline) into ``scanner``'s state.

        Returns False, having changed nothing, when the block holds a line whose effect
        this path cannot prove; the caller then reads the block line by line.
        """
        size = len(block)
        if size < 64:
            return False
        if self._bytes.size < size + len(_PAD):
            self._bytes = np.zeros(max(size + len(_PAD), 1 << 20), np.uint8)
        buf = self._bytes
        buf[:size] = np.frombuffer(block, np.uint8)
        buf[size : size + len(_PAD)] = 0
        return self.scan_range(scanner, block, buf, 0, size)

    def scan_range(
        self, scanner: TraceScanner, text: Any, buf: np.ndarray, begin: int, end: int
    ) -> bool:
        """``scan`` for the lines in ``text[begin:end]``, read in place.

        ``text`` is sliced for the lines kept (bytes or a mmap); ``buf`` is a uint8 array
        over the same bytes with at least 40 readable bytes after ``end``.
        """
        if end - begin < 64:
            return False
        a = buf[begin:end]
        if a[-1] != 10 or a[-2] != 125 or a.max() >= 128:  # whole "}" lines, ASCII
            return False
        self._masks(end - begin)
        # words[i] is the 8 bytes at offset i (an unaligned, overlapping view: no copy).
        words = np.ndarray((buf.size - 7,), "<u8", buf, 0, (1,))
        nl = self._where(a, 10) + begin
        n = nl.size
        starts = np.empty(n, np.intp)
        starts[0] = begin
        starts[1:] = nl[:-1] + 1
        # Flat object lines: "{" first, "}" last, and no other "{" on the line.
        flat = (buf[starts] == 123) & (buf[nl - 1] == 125)
        if not flat.all() or self._count(a, 123) != n:
            braces = self._where(a, 123) + begin
            flat &= np.bincount(np.searchsorted(nl, braces), minlength=n) == 1

        # Where the trace id key and the action key may be: at "_i" (trace_id) and '"a'.
        pairs = self._pairs(a, _SEP[9:11], _ACTION_KEY[2:4]) + begin
        sep = pairs[buf[pairs] == 95] - 9
        action = pairs[buf[pairs] == 34] - 2
        # The trace id key: once on the line, on a flat line that starts with the timestamp.
        sep = sep[sep >= begin]
        sep = sep[(words[sep] == _SEP_WORDS[0]) & (words[sep + 8] == _SEP_WORDS[1])]
        if sep.size == 0:
            return False
        line = np.searchsorted(nl, sep)
        twice = np.zeros(n, bool)
        repeated = line[1:] == line[:-1]
        twice[line[1:][repeated]] = True
        keep = flat[line] & ~twice[line]
        sep, line = sep[keep], line[keep]
        start = starts[line]
        ok = _at_head(words, start)

        # The event key and a known event directly before the trace id key.
        code = buf[sep - 3]  # a line holds the 15 byte head before sep
        length = _EVENT_LEN[code]
        event_at = sep - length
        ok &= (length > 0) & (event_at >= start + len(_HEAD))
        event_at = np.where(ok, event_at, begin)
        ok &= (
            (words[event_at] == _EVENT_WORDS[0, code])
            & (words[event_at + 8] == _EVENT_WORDS[1, code])
            & (words[sep - 8] == _EVENT_WORDS[2, code])
        )

        # The action key on the same line, before the event key.
        action = action[action >= begin]
        action = action[
            (words[action] == _ACTION_WORDS[0])
            & (words[action + len(_ACTION_KEY) - 8] == _ACTION_WORDS[1])
        ]
        first_action = np.full(n, end, np.intp)
        if action.size:
            action_line = np.searchsorted(nl, action)
            first = np.ones(action.size, bool)
            first[1:] = action_line[1:] != action_line[:-1]
            first_action[action_line[first]] = action[first]
        ok &= first_action[line] < event_at

        # The trace id: up to a quote within 31 bytes, no backslash or control byte before it.
        tid_at = sep + len(_SEP)
        tid_words = np.stack([words[tid_at + 8 * j] for j in range(_TID_WORDS)], axis=1)
        width = self._widths(buf, tid_at, tid_words)
        ok &= width > 0

        act = np.flatnonzero(ok)
        if act.size == 0:
            return False
        is_action = np.zeros(n, bool)
        is_action[line[act]] = True
        other = np.flatnonzero(~is_action)
        rest: list[bytes] = []
        if other.size:
            rest = [
                text[s:e] for s, e in zip(starts[other].tolist(), nl[other].tolist(), strict=True)
            ]
            joined = b"\n".join(rest)
            # A line that could be an action record in another shape must be read in place.
            if b'"action"' in joined or b"\\u" in joined:
                return False

        # Pair records by trace id: sort the ids' hashes; equal neighbours are one action.
        if act.size < sep.size:
            line, code, tid_at, width, tid_words = (
                line[act],
                code[act],
                tid_at[act],
                width[act],
                tid_words[act],
            )
        first_width = int(width[0])
        if (width == first_width).all():  # one mask for all ids
            ids = tid_words & _low_bytes(width[:1])
        else:
            ids = tid_words & _low_bytes(width)
        h = _hash(ids)
        order = np.argsort(h)
        hs = h[order]
        same = hs[1:] == hs[:-1]
        if (same[1:] & same[:-1]).any():  # an id three times or more
            return False
        pair = np.flatnonzero(same)
        first_of = np.minimum(order[pair], order[pair + 1])
        second_of = np.maximum(order[pair], order[pair + 1])
        if not (
            (ids[first_of] == ids[second_of]).all()  # no hash collision
            and (code[first_of] == _ENTER).all()
            and (code[second_of] != _ENTER).all()
        ):
            return False
        running = scanner.running
        if self.stale:  # the ordered path changed what is open: hash it again
            self._open = {}
            for hash_ in _hashes_of(running).tolist():
                self._open[hash_] = self._open.get(hash_, 0) + 1
            self.stale = False
        if self._open:
            # An id open before the block that enters and ends in it: the ordered path
            # decides (a hash collision lands here too, which is only slower).
            # Sorted hashes hold a pair as equal neighbours.
            open_hashes = np.fromiter(self._open, np.uint64, len(self._open))
            at = np.searchsorted(hs, open_hashes)
            last = hs.size - 1
            if (
                (at < last)
                & (hs[np.minimum(at, last)] == open_hashes)
                & (hs[np.minimum(at + 1, last)] == open_hashes)
            ).any():
                return False

        # From here on the scanner's state changes. An action whose enter and end are
        # both in the block leaves only an anomaly; the rest is applied in line order.
        scanner.lines += act.size
        line_start, line_end = starts[line], nl[line]
        partner = np.full(act.size, -1, np.intp)
        partner[second_of] = first_of
        chosen = np.ones(act.size, bool)
        chosen[first_of] = False
        chosen[second_of] = code[second_of] != _EXIT
        picked = np.flatnonzero(chosen)
        enter_of = partner[picked]
        finished, orphans = scanner.finished, scanner.orphans
        opened = self._open
        for c, hash_, t, w, s, e, j, js, je in zip(
            code[picked].tolist(),
            h[picked].tolist(),
            tid_at[picked].tolist(),
            width[picked].tolist(),
            line_start[picked].tolist(),
            line_end[picked].tolist(),
            enter_of.tolist(),
            line_start[enter_of].tolist(),
            line_end[enter_of].tolist(),
            strict=True,
        ):
            tid = text[t : t + w]
            line_text = text[s:e]
            if c == _ENTER:
                if tid not in running:
                    opened[hash_] = opened.get(hash_, 0) + 1
                running[tid] = line_text
                continue
            name = _NAME_OF_CODE[c]
            if j >= 0:  # its enter is in this block
                finished[name][tid] = (line_text, text[js:je])
                continue
            enter = running.pop(tid, None)
            if enter is not None and len(tid) < _TID_BYTES:
                left = opened.get(hash_, 0) - 1
                if left > 0:
                    opened[hash_] = left
                else:
                    opened.pop(hash_, None)
            if name != "exit":
                finished[name][tid] = (line_text, enter)
            if enter is None and orphans is not None:
                orphans.append((tid, name, line_text if name != "exit" else b""))
        if rest:
            self._read_others(scanner, rest, joined, words, starts[other], flat[other])
        return True

    def _read_others(
        self,
        scanner: TraceScanner,
        lines: list[bytes],
        joined: bytes,
        words: np.ndarray,
        starts: np.ndarray,
        flat: np.ndarray,
    ) -> None:
        """The block's lines that are not action records, none of which may be one.

        A flat line that starts with the timestamp and holds the level and message keys
        is a valid plain record (an HTTP line, a log message) and only counted; the rest
        (the agent's own records, problems) is read by ``_scan_lines`` in order.
        """
        if _AGENT_MESSAGE in joined:
            scanner._scan_lines(lines)
            return
        plain = flat & _at_head(words, starts)
        level = map(bytes.__contains__, lines, repeat(_LEVEL_KEY))
        message = map(bytes.__contains__, lines, repeat(_MESSAGE_KEY))
        left = [
            line
            for line, simple, has_level, has_message in zip(
                lines, plain.tolist(), level, message, strict=True
            )
            if not (simple and has_level and has_message)
        ]
        scanner.lines += len(lines) - len(left)
        if left:
            scanner._scan_lines(left)

    def _widths(self, buf: np.ndarray, tid_at: np.ndarray, tid_words: np.ndarray) -> np.ndarray:
        """Each trace id's width (0: not one this path reads).

        Most blocks hold ids of one width (inspect's are 22 characters): that width is
        checked on whole words (no quote, backslash or control byte before the closing
        quote); ids of other widths are measured byte by byte.
        """
        width = np.zeros(tid_at.size, np.intp)
        first = tid_words[0].tobytes().find(b'"')
        if first > 0:
            low = _low_bytes(np.array([first]))[0]
            # Bytes past the id become "A", which none of the tests below flags.
            x = (tid_words & low) | (_AAAA & ~low)
            flags = _zero_bytes(x ^ _QUOTES) | _zero_bytes(x ^ _BACKSLASHES) | _below_space(x)
            same = ~flags.any(axis=1) & (buf[tid_at + first] == 34)
            width[same] = first
            rest = np.flatnonzero(~same)
        else:
            rest = np.arange(tid_at.size)
        if rest.size:
            raw = tid_words[rest].view(np.uint8).reshape(rest.size, _TID_BYTES)
            quote = raw == 34
            at = quote.argmax(axis=1)
            dirty = ((raw == 92) | (raw < 32)) & (_COLUMNS < at[:, None])
            good = quote[np.arange(at.size), at] & ~dirty.any(axis=1)
            width[rest] = np.where(good, at, 0)
        return width


_ONE = np.uint64(1)
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_AAAA = np.uint64(0x4141414141414141)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)


def _whole_words(size: int) -> int:
    """``size`` rounded up to a multiple of 64 (a mask packed into 64-bit words)."""
    return -(-size // 64) * 64


def _sparse_nonzero(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(mask)`` for a sparse mask whose size is a multiple of 64.

    The mask is packed into 64-bit words; only words with a bit set are visited, one
    lowest bit per word per round (a word rarely holds more than two).
    """
    words = np.packbits(mask, bitorder="little").view("<u8")
    at = np.flatnonzero(words)
    bits = words[at]
    base = at * 64
    found = []
    while bits.size:
        low = bits & (~bits + _ONE)
        found.append(base + (np.frexp(low.astype(np.float64))[1] - 1))
        bits = bits ^ low
        more = bits != 0
        if not more.all():
            bits, base = bits[more], base[more]
    if len(found) == 1:
        return found[0]
    if not found:
        return np.zeros(0, np.intp)
    offsets = np.concatenate(found)
    offsets.sort()
    return offsets


def _at_head(words: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Whether each line starting at ``starts`` begins with ``{"timestamp": "``."""
    return (words[starts] == _HEAD_WORDS[0]) & (words[starts + len(_HEAD) - 8] == _HEAD_WORDS[1])


def _zero_bytes(x: np.ndarray) -> np.ndarray:
    """Nonzero where a word holds a zero byte (exact as a yes/no per word)."""
    return (x - _ONES) & ~x & _HIGHS


def _below_space(x: np.ndarray) -> np.ndarray:
    """Nonzero where a word holds a byte below 0x20 (exact as a yes/no per word)."""
    return (x - _SPACES) & ~x & _HIGHS


def _low_bytes(width: np.ndarray) -> np.ndarray:
    """(k, _TID_WORDS) masks that keep the first ``width`` bytes of each id."""
    return _LOW_BYTES[np.minimum(width[:, None] - 8 * np.arange(_TID_WORDS), 8).clip(0)]


def _hashes_of(running: dict[bytes, bytes]) -> np.ndarray:
    """The hashes of the open ids short enough to be read by this path."""
    keys = [k for k in running if 0 < len(k) < _TID_BYTES]
    if not keys:
        return np.zeros(0, np.uint64)
    buf = b"".join(k.ljust(_TID_BYTES, b"\0") for k in keys)
    return _hash(np.frombuffer(buf, "<u8").reshape(len(keys), _TID_WORDS))
