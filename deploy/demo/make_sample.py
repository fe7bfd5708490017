"""Generate the deterministic demo collection ingested by `make demo` (standard library only)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import struct
import sys
import textwrap
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Fixed inputs: everything below is derived from these, so every run yields identical bytes.
# --------------------------------------------------------------------------------------------

SEED = 0x5EED_D0_1987
FIXED_MTIME = 1716163200  # 2024-05-20T00:00:00Z, applied to every generated file and folder
BAGGING_DATE = "2024-05-20"
PDF_DATE = "D:20240520000000Z"

LIBRARY_ZH = "敦煌县图书馆"
LIBRARY_EN = "Dunhuang County Library"
FOOTER = "Dunhuang County Library - invented sample data for the siku demo"

RS = "http://rightsstatements.org/vocab/{}/1.0/"
CC_BY = "https://creativecommons.org/licenses/by/4.0/"
CC_BY_NC = "https://creativecommons.org/licenses/by-nc/4.0/"
PDM = "https://creativecommons.org/publicdomain/mark/1.0/"

MIME = {".pdf": "application/pdf", ".png": "image/png", ".txt": "text/plain"}
ACCESS = ("open", "network", "onsite", "restricted", "embargoed")
DC_ELEMENTS = frozenset(
    {
        "title",
        "creator",
        "subject",
        "description",
        "publisher",
        "contributor",
        "date",
        "type",
        "format",
        "identifier",
        "source",
        "language",
        "relation",
        "coverage",
        "rights",
    }
)

Color = tuple[int, int, int]
MASK64 = (1 << 64) - 1
PI = 3.141592653589793
TAU = 2 * PI


# --------------------------------------------------------------------------------------------
# Deterministic maths: a private PRNG and sine built only from IEEE-exact float operations, so
# the images do not depend on the platform's libm or on the `random` module's implementation.
# --------------------------------------------------------------------------------------------


class Rng:
    """SplitMix64 pseudo-random generator (not for security; only for reproducible pictures)."""

    def __init__(self, *labels: object) -> None:
        digest = hashlib.sha256(repr((SEED, *labels)).encode()).digest()
        self.state = int.from_bytes(digest[:8], "big")

    def u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.u64() >> 11) / float(1 << 53)

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def randint(self, lo: int, hi: int) -> int:
        return lo + self.u64() % (hi - lo + 1)


def sin(x: float) -> float:
    """Sine via range reduction and a Taylor series (deterministic on every platform)."""
    x = x % TAU
    if x > PI:
        x -= TAU
    if x > PI / 2:
        x = PI - x
    elif x < -PI / 2:
        x = -PI - x
    x2 = x * x
    term = total = x
    for n in range(1, 12):
        term *= -x2 / ((2 * n) * (2 * n + 1))
        total += term
    return total


def clamp(v: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo if v < lo else hi if v > hi else v


def lerp(a: Color, b: Color, t: float) -> Color:
    t = clamp(t)
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


SEPIA_DARK: Color = (38, 27, 16)
SEPIA_LIGHT: Color = (238, 224, 192)


def sepia(tone: float) -> Color:
    return lerp(SEPIA_DARK, SEPIA_LIGHT, tone)


def value_noise(rng: Rng, w: int, h: int, cell: int) -> list[list[float]]:
    """Smooth value noise in [0, 1], bilinearly interpolated over a random lattice."""
    gw, gh = w // cell + 2, h // cell + 2
    grid = [[rng.random() for _ in range(gw)] for _ in range(gh)]
    out: list[list[float]] = []
    for y in range(h):
        gy, fy = divmod(y, cell)
        ty = fy / cell
        ty = ty * ty * (3 - 2 * ty)
        row: list[float] = []
        for x in range(w):
            gx, fx = divmod(x, cell)
            tx = fx / cell
            tx = tx * tx * (3 - 2 * tx)
            top = grid[gy][gx] + (grid[gy][gx + 1] - grid[gy][gx]) * tx
            bot = grid[gy + 1][gx] + (grid[gy + 1][gx + 1] - grid[gy + 1][gx]) * tx
            row.append(top + (bot - top) * ty)
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------
# PNG: RGB, 8 bits per channel, written with struct; the zlib stream uses stored (uncompressed)
# deflate blocks built by hand so the bytes never depend on the zlib library's version.
# --------------------------------------------------------------------------------------------


def stored_zlib(raw: bytes) -> bytes:
    out = bytearray(b"\x78\x01")
    blocks = [raw[i : i + 65535] for i in range(0, len(raw), 65535)] or [b""]
    for i, block in enumerate(blocks):
        out.append(1 if i == len(blocks) - 1 else 0)
        out += struct.pack("<HH", len(block), len(block) ^ 0xFFFF)
        out += block
    out += struct.pack(">I", zlib.adler32(raw))
    return bytes(out)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, pixels: bytes | bytearray) -> bytes:
    stride = width * 3
    raw = b"".join(b"\x00" + bytes(pixels[y * stride : (y + 1) * stride]) for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", stored_zlib(raw))
        + png_chunk(b"IEND", b"")
    )


class Canvas:
    """A tiny RGB raster with the handful of drawing primitives the sample pictures need."""

    def __init__(self, width: int, height: int, fill: Color = (255, 255, 255)) -> None:
        self.w, self.h = width, height
        self.px = bytearray(bytes(fill) * (width * height))

    def get(self, x: int, y: int) -> Color:
        i = (y * self.w + x) * 3
        return self.px[i], self.px[i + 1], self.px[i + 2]

    def set(self, x: int, y: int, c: Color) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i : i + 3] = bytes(c)

    def paint(self, fn: Callable[[int, int], Color]) -> None:
        for y in range(self.h):
            for x in range(self.w):
                self.set(x, y, fn(x, y))

    def rect(self, x0: int, y0: int, x1: int, y1: int, c: Color) -> None:
        for y in range(max(0, y0), min(self.h, y1 + 1)):
            for x in range(max(0, x0), min(self.w, x1 + 1)):
                self.set(x, y, c)

    def frame(self, x0: int, y0: int, x1: int, y1: int, c: Color) -> None:
        self.rect(x0, y0, x1, y0, c)
        self.rect(x0, y1, x1, y1, c)
        self.rect(x0, y0, x0, y1, c)
        self.rect(x1, y0, x1, y1, c)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, c: Color) -> None:
        for y in range(int(cy - ry) - 1, int(cy + ry) + 2):
            for x in range(int(cx - rx) - 1, int(cx + rx) + 2):
                if ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0:
                    self.set(x, y, c)

    def line(self, x0: float, y0: float, x1: float, y1: float, c: Color, width: int = 1) -> None:
        steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) * 2))
        for i in range(steps + 1):
            t = i / steps
            x, y = round(x0 + (x1 - x0) * t), round(y0 + (y1 - y0) * t)
            self.rect(x - (width - 1) // 2, y - (width - 1) // 2, x + width // 2, y + width // 2, c)

    def triangle(self, pts: list[tuple[float, float]], c: Color) -> None:
        (ax, ay), (bx, by), (qx, qy) = pts

        def side(px: float, py: float, ux: float, uy: float, vx: float, vy: float) -> float:
            return (px - vx) * (uy - vy) - (ux - vx) * (py - vy)

        for y in range(int(min(ay, by, qy)), int(max(ay, by, qy)) + 1):
            for x in range(int(min(ax, bx, qx)), int(max(ax, bx, qx)) + 1):
                d1 = side(x, y, ax, ay, bx, by)
                d2 = side(x, y, bx, by, qx, qy)
                d3 = side(x, y, qx, qy, ax, ay)
                if not ((d1 < 0 or d2 < 0 or d3 < 0) and (d1 > 0 or d2 > 0 or d3 > 0)):
                    self.set(x, y, c)

    def grain(self, rng: Rng, amount: int) -> None:
        for i in range(0, len(self.px), 3):
            d = rng.randint(-amount, amount)
            for k in range(3):
                self.px[i + k] = max(0, min(255, self.px[i + k] + d))

    def vignette(self, strength: float) -> None:
        cx, cy = (self.w - 1) / 2, (self.h - 1) / 2
        for y in range(self.h):
            for x in range(self.w):
                d = ((x - cx) / cx) ** 2 + ((y - cy) / cy) ** 2
                f = 1.0 - strength * clamp(d - 0.35)
                r, g, b = self.get(x, y)
                self.set(x, y, (round(r * f), round(g * f), round(b * f)))

    def png(self) -> bytes:
        return encode_png(self.w, self.h, self.px)


# ---- old photographs (sepia, 128x96) --------------------------------------------------------


def sky_and_dunes(cv: Canvas, rng: Rng, horizon: float, amp: float) -> list[float]:
    """Paint a graded sky over dunes; return the ridge height for each column."""
    p1, p2, p3 = rng.uniform(0, TAU), rng.uniform(0, TAU), rng.uniform(0, TAU)
    f1, f2 = rng.uniform(0.03, 0.06), rng.uniform(0.09, 0.14)
    ridge = [
        horizon - amp * (0.6 * sin(x * f1 + p1) + 0.3 * sin(x * f2 + p2) + 0.1 * sin(x * 0.31 + p3))
        for x in range(cv.w)
    ]

    def shade(x: int, y: int) -> Color:
        if y < ridge[x]:
            return sepia(0.92 - 0.3 * y / cv.h)
        slope = ridge[min(cv.w - 1, x + 1)] - ridge[max(0, x - 1)]
        depth = (y - ridge[x]) / cv.h
        return sepia(0.62 + 0.09 * slope * clamp(1 - 4 * depth) - 0.12 * depth)

    cv.paint(shade)
    return ridge


def figure(cv: Canvas, x: float, y: float, scale: float, tone: float) -> None:
    cv.ellipse(x, y - 5 * scale, 1.4 * scale, 1.5 * scale, sepia(tone * 0.8))
    cv.rect(
        round(x - 1.5 * scale),
        round(y - 3.5 * scale),
        round(x + 1.5 * scale),
        round(y),
        sepia(tone),
    )


def camel(cv: Canvas, x: float, y: float, c: Color) -> None:
    cv.ellipse(x, y - 6, 6, 3, c)
    cv.ellipse(x - 1, y - 9, 2.5, 2, c)
    cv.line(x + 5, y - 7, x + 8, y - 13, c, 2)
    cv.ellipse(x + 9, y - 13, 2, 1.2, c)
    for dx in (-4, -2, 2, 4):
        cv.line(x + dx, y - 4, x + dx, y, c)


def photo_crescent_spring(rng: Rng) -> Canvas:
    cv = Canvas(128, 96)
    sky_and_dunes(cv, rng, 40, 14)
    for y in range(60, 88):
        for x in range(20, 110):
            inside = ((x - 64) / 42) ** 2 + ((y - 74) / 12) ** 2 <= 1
            bite = ((x - 70) / 40) ** 2 + ((y - 67) / 10) ** 2 <= 1
            if inside and not bite:
                cv.set(x, y, sepia(0.28 + 0.04 * sin(x * 0.8)))
    cv.rect(88, 60, 98, 66, sepia(0.35))
    cv.triangle([(85, 60), (101, 60), (93, 54)], sepia(0.2))
    cv.grain(rng, 10)
    cv.vignette(0.5)
    return cv


def photo_caravan(rng: Rng) -> Canvas:
    cv = Canvas(128, 96)
    ridge = sky_and_dunes(cv, rng, 58, 22)
    for i in range(6):
        x = 14 + i * 17 + rng.randint(-2, 2)
        camel(cv, x, ridge[x] + 1, sepia(0.12))
    figure(cv, 8, ridge[8] + 1, 1.3, 0.15)
    cv.grain(rng, 12)
    cv.vignette(0.55)
    return cv


def photo_east_gate(rng: Rng) -> Canvas:
    cv = Canvas(128, 96)
    cv.paint(
        lambda x, y: sepia(0.9 - 0.25 * y / 96) if y < 70 else sepia(0.6 - 0.1 * (y - 70) / 26)
    )
    wall = sepia(0.55)
    cv.rect(0, 42, 127, 70, wall)
    for y in range(44, 70, 4):
        off = 0 if (y // 4) % 2 else 3
        for x in range(off, 128, 6):
            cv.set(x, y, sepia(0.45))
        cv.rect(0, y, 127, y, sepia(0.5))
    cv.rect(50, 30, 78, 42, sepia(0.45))
    cv.triangle([(42, 31), (86, 31), (64, 18)], sepia(0.18))
    cv.rect(56, 52, 72, 70, sepia(0.08))
    cv.ellipse(64, 52, 8, 6, sepia(0.08))
    for x in (20, 34, 92, 108):
        figure(cv, x + rng.randint(-3, 3), 84 + rng.randint(-4, 4), 1.6, 0.2)
    cv.grain(rng, 14)
    cv.vignette(0.6)
    return cv


def photo_reservoir(rng: Rng) -> Canvas:
    cv = Canvas(128, 96)
    cv.paint(lambda x, y: sepia(0.9 - 0.2 * y / 96))
    for cx, hw, top in ((20, 34, 18), (70, 44, 10), (116, 30, 22)):
        cv.triangle(
            [(cx - hw, 50), (cx + hw, 50), (cx, top)], sepia(0.5 + rng.uniform(-0.05, 0.05))
        )
    cv.rect(0, 50, 127, 62, sepia(0.35))
    for y in range(52, 62, 3):
        cv.line(rng.randint(0, 40), y, rng.randint(60, 127), y, sepia(0.45))
    cv.triangle([(-10, 95), (138, 95), (64, 60)], sepia(0.68))
    cv.rect(0, 62, 127, 95, sepia(0.68))
    cv.rect(0, 61, 127, 63, sepia(0.75))
    for _ in range(28):
        figure(cv, rng.randint(4, 124), rng.randint(70, 94), 0.9, 0.2)
    cv.grain(rng, 10)
    cv.vignette(0.45)
    return cv


def photo_temple_fair(rng: Rng) -> Canvas:
    cv = Canvas(128, 96)
    cv.paint(lambda x, y: sepia(0.88 - 0.2 * y / 96) if y < 48 else sepia(0.66))
    cv.rect(0, 30, 127, 48, sepia(0.58))
    for x in range(6, 128, 9):
        cv.ellipse(x, 28 + rng.randint(-3, 2), 3.5, 12, sepia(0.3 + rng.uniform(-0.05, 0.05)))
    for x0 in (10, 48, 86):
        cv.triangle([(x0, 66), (x0 + 30, 66), (x0 + 15, 52)], sepia(0.82))
        cv.line(x0, 66, x0 + 15, 52, sepia(0.3))
        cv.line(x0 + 15, 52, x0 + 30, 66, sepia(0.3))
    for _ in range(22):
        figure(cv, rng.randint(4, 124), rng.randint(72, 94), 1.2, 0.18 + rng.uniform(0, 0.2))
    camel(cv, 12, 88, sepia(0.15))
    cv.grain(rng, 12)
    cv.vignette(0.5)
    return cv


def photo_group(rng: Rng, rows: int, per_row: int, studio: bool) -> Canvas:
    cv = Canvas(128, 96)
    if studio:
        cv.paint(lambda x, y: sepia(0.55 + 0.3 * (1 - abs(x - 64) / 64) - 0.1 * y / 96))
        cv.rect(0, 78, 127, 95, sepia(0.4))
    else:
        cv.paint(lambda x, y: sepia(0.85) if y < 20 else sepia(0.62))
        cv.rect(0, 20, 127, 55, sepia(0.7))
        for x in range(8, 128, 20):
            cv.rect(x, 28, x + 9, 42, sepia(0.25))
    for r in range(rows):
        y = 60 + r * 12 if not studio else 62 + r * 26
        n = per_row - (r % 2)
        span = 100 if not studio else 80
        for i in range(n):
            fx = 64 - span / 2 + span * (i + 0.5) / n + rng.uniform(-1.5, 1.5)
            scale = (4.0 if studio else 1.7) + (0.3 if r == 0 else 0.0)
            figure(cv, fx, y + rng.uniform(-1, 1), scale, 0.15 + 0.4 * ((i + r) % 2))
    cv.grain(rng, 11)
    cv.vignette(0.65)
    return cv


# ---- page scans (96x128) --------------------------------------------------------------------

PAPER: Color = (226, 212, 178)
INK: Color = (44, 36, 30)
VERMILION: Color = (176, 48, 34)


def glyph(cv: Canvas, rng: Rng, x: int, y: int, size: int, ink: Color) -> None:
    """A made-up 'character': a few short strokes inside a size x size cell."""
    for _ in range(rng.randint(3, 6)):
        if rng.random() < 0.5:
            yy = y + rng.randint(0, size - 1)
            x0 = x + rng.randint(0, size // 2)
            cv.line(x0, yy, x0 + rng.randint(2, size - 1), yy, ink)
        else:
            xx = x + rng.randint(0, size - 1)
            y0 = y + rng.randint(0, size // 2)
            cv.line(xx, y0, xx + rng.randint(-1, 1), y0 + rng.randint(2, size - 1), ink)


def paper(rng: Rng, w: int = 96, h: int = 128, base: Color = PAPER) -> Canvas:
    cv = Canvas(w, h, base)
    stains = value_noise(rng, w, h, 24)
    cv.paint(lambda x, y: lerp(base, (196, 176, 136), 0.6 * stains[y][x] ** 3))
    cv.grain(rng, 5)
    return cv


def columns(
    cv: Canvas, rng: Rng, xs: Iterable[int], y0: int, y1: int, size: int, jitter: int
) -> None:
    for x in xs:
        y = y0
        stop = y1 - rng.randint(0, (y1 - y0) // 3) if rng.random() < 0.2 else y1
        while y + size <= stop:
            glyph(cv, rng, x + rng.randint(-jitter, jitter), y, size, INK)
            y += size + 2 + rng.randint(0, jitter)


def scan_manuscript(rng: Rng) -> Canvas:
    cv = paper(rng)
    columns(cv, rng, range(80, 6, -9), 10, 118, 6, 1)
    for _ in range(3):
        x, y = rng.randint(10, 80), rng.randint(12, 110)
        cv.line(x, y, x + 6, y + 2, VERMILION)
    return cv


def scan_woodblock(rng: Rng) -> Canvas:
    cv = paper(rng)
    cv.frame(5, 6, 90, 121, VERMILION)
    cv.frame(7, 8, 88, 119, VERMILION)
    for x in range(16, 88, 9):
        if x != 52:
            cv.rect(x, 8, x, 119, VERMILION)
    cv.rect(48, 8, 56, 119, PAPER)
    cv.triangle([(48, 30), (56, 30), (52, 36)], VERMILION)
    cv.triangle([(48, 96), (56, 96), (52, 90)], VERMILION)
    columns(cv, rng, [x + 2 for x in range(79, 8, -9) if abs(x + 2 - 52) > 5], 12, 116, 5, 0)
    return cv


def scan_lineage_chart(rng: Rng) -> Canvas:
    cv = paper(rng, base=(232, 230, 224))
    boxes = [(40, 10)]
    for gen in range(1, 5):
        n = gen + 1
        for i in range(n):
            boxes.append((8 + i * (80 // n), 10 + gen * 24))
    for bx, by in boxes:
        cv.frame(bx, by, bx + 14, by + 10, INK)
        glyph(cv, rng, bx + 3, by + 2, 6, INK)
        if by > 10:
            cv.line(bx + 7, by, bx + 7, by - 6, INK)
            cv.line(bx + 7, by - 6, 47, by - 6, INK)
    cv.grain(rng, 6)
    return cv


def scan_manuscript_with_plan(rng: Rng) -> Canvas:
    cv = paper(rng)
    columns(cv, rng, range(82, 8, -8), 8, 70, 5, 1)
    cv.frame(20, 80, 76, 120, INK)
    cv.triangle([(40, 112), (56, 112), (48, 96)], (120, 100, 80))
    for x, y in ((26, 86), (70, 86), (26, 114), (70, 114)):
        cv.ellipse(x, y, 3, 3, (70, 90, 50))
    return cv


def sketch_cave_facade(rng: Rng) -> Canvas:
    cv = paper(rng, 128, 96, base=(238, 232, 214))
    pencil: Color = (96, 92, 88)
    ridge = [18 + 4 * sin(x * 0.07 + 1.0) for x in range(128)]
    for x in range(127):
        cv.line(x, ridge[x], x + 1, ridge[x + 1], pencil)
    for row, y in enumerate((30, 50, 70)):
        for x in range(10 + 6 * (row % 2), 118, 16):
            cv.frame(x, y, x + 8, y + 11, pencil)
            cv.ellipse(x + 4, y + 1, 4, 2, pencil)
    for y in range(84, 94, 3):
        cv.line(4, y, 124, y + rng.uniform(-1, 1), (150, 146, 140))
    cv.rect(100, 90, 124, 90, pencil)
    return cv


# ---- the county map (192x192), used by two resources: byte-identical for de-duplication ------


def county_map() -> Canvas:
    rng = Rng("county-map-1935")
    w = h = 192
    terrain = value_noise(rng, w, h, 32)
    fine = value_noise(rng, w, h, 8)
    river = [64 + 14 * sin(y * 0.045 + 0.7) + 5 * sin(y * 0.13) for y in range(h)]
    canals = [(y, rng.randint(40, 90)) for y in range(60, 140, 16)]

    def ground(x: int, y: int) -> Color:
        t = 0.7 * terrain[y][x] + 0.3 * fine[y][x]
        if y > 150:  # the mountains to the south, hatched
            base = lerp((196, 170, 126), (150, 120, 84), (y - 150) / 42 + 0.3 * t)
            return (120, 96, 70) if (x + 2 * y) % 7 == 0 else base
        if x < river[y] - 18 and y > 100 and (x * 3 + y * 5) % 11 == 0:  # dunes, stippled
            return (176, 140, 90)
        c = lerp((230, 214, 170), (206, 184, 136), t)
        near = min(abs(y - cy) for cy, _ in canals)
        if 50 < y < 150 and river[y] - 6 < x < river[y] + 96 and near < 12:
            c = lerp(c, (168, 184, 120), 0.6 * (1 - near / 12))
        return c

    cv = Canvas(w, h)
    cv.paint(ground)
    for x in range(0, w, 32):  # the square grid of traditional Chinese cartography
        for y in range(h):
            if y % 3:
                cv.set(x, y, (196, 120, 104))
    for y in range(0, h, 32):
        for x in range(w):
            if x % 3:
                cv.set(x, y, (196, 120, 104))
    water: Color = (62, 104, 156)
    for y in range(h - 1):
        cv.line(river[y], y, river[y + 1], y + 1, water, 2)
    for cy, length in canals:
        x0 = river[cy]
        cv.line(x0, cy, x0 + length, cy + rng.randint(-6, 6), water)
    cv.rect(112, 86, 134, 108, (236, 226, 200))
    cv.frame(112, 86, 134, 108, (120, 40, 30))
    cv.frame(113, 87, 133, 107, (120, 40, 30))
    cv.rect(123, 87, 123, 107, (150, 90, 70))
    cv.rect(113, 97, 133, 97, (150, 90, 70))
    cv.ellipse(150, 130, 5, 3, water)
    cv.triangle([(172, 10), (178, 10), (175, 2)], (40, 30, 24))
    cv.line(175, 10, 175, 22, (40, 30, 24))
    cv.frame(0, 0, w - 1, h - 1, (40, 30, 24))
    cv.frame(3, 3, w - 4, h - 4, (40, 30, 24))
    return cv


# --------------------------------------------------------------------------------------------
# PDF 1.4 written by hand: Helvetica, ASCII text, uncompressed content streams, exact xref.
# --------------------------------------------------------------------------------------------


def pdf_escape(s: str) -> str:
    if not s.isascii():
        raise ValueError(f"PDF text must be ASCII: {s!r}")
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_page_stream(title: str, paragraphs: list[str], page: int, pages: int) -> bytes:
    ops = [
        f"BT /F1 16 Tf 72 770 Td ({pdf_escape(title)}) Tj ET",
        "0.6 w 72 758 m 523 758 l S",
        "BT /F1 11 Tf 15 TL 72 734 Td",
    ]
    first = True
    for para in paragraphs:
        lines = textwrap.wrap(para, 84) or [""]
        for i, line in enumerate(lines):
            op = "T*" if first or i else "T* T*"
            if first:
                op, first = "", False
            ops.append(f"{op} ({pdf_escape(line)}) Tj".strip())
    ops.append("ET")
    ops.append(f"BT /F1 8 Tf 72 40 Td ({pdf_escape(FOOTER)} - page {page} of {pages}) Tj ET")
    return ("\n".join(ops) + "\n").encode("ascii")


def make_pdf(title: str, pages: list[list[str]]) -> bytes:
    n = len(pages)
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(n))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        (
            f"<< /Title ({pdf_escape(title)}) /Producer (siku deploy/demo/make_sample.py) "
            f"/CreationDate ({PDF_DATE}) /ModDate ({PDF_DATE}) >>"
        ).encode(),
    ]
    for i, paragraphs in enumerate(pages):
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {6 + 2 * i} 0 R >>"
            ).encode()
        )
        stream = pdf_page_stream(title, paragraphs, i + 1, n)
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Content. All people, numbers and events below are invented for the demo.
# --------------------------------------------------------------------------------------------

TXT: dict[str, str] = {
    "lg0001-daoguang-juan1.txt": """\
敦煌县志（道光本）卷一　舆地志　录文（节选）

县治在党河之东，城周三里有奇，门四：东曰迎恩，西曰镇远，\
南曰鸣沙，北曰通德。城东南十里为鸣沙山，沙分五色，晴日\
人行其上，有声如雷，故名。山下有泉，形如新月，四时不涸，\
土人呼为月牙泉。

党河发源南山，北流经城西，分渠十道，灌田数千顷。每岁春分\
开渠，立夏分水，由渠长按户轮灌，旧有水簿存县署。河西岸多\
沙碛，风起则沙走，居民植柳以御之。

县境东西二百四十里，南北一百八十里。东至安西界，西至戈壁，\
南至南山，北至湖滩。乡分十隅，户口岁有增减，详见户口志。

按：此段据馆藏本录出，原书虫蛀数处，以□标示缺字，如\
“城北□里有古墩”。录文仅供检索参考，引用请核对原件影像。
""",
    "lg0004-shazhou-draft.txt": """\
沙州乡土志（稿本）第一册　录文

历史：沙州设治甚早，历代沿革不一。本志所记，以光绪末年\
见闻为主，兼采父老所述，未及遍考旧籍。

地理：州城西南多沙山，东北多田畴。党河之水出自南山雪峰，\
夏涨冬涸。近年渠道淤塞，乡民每岁出夫疏浚，一户一夫，无夫\
者出钱。

物产：谷有小麦、糜子、青稞；果有杏、梨、枣；瓜有西瓜、甜瓜，\
甜瓜以城南所产为最。畜有驼、马、羊。驼户往来安西、哈密之间，\
运盐运布。

学堂：城内旧有书院一所，光绪末改为高等小学堂，学生三十余名，\
习国文、算术、地理、修身。

编者按：稿本共二册，字迹潦草，涂改甚多。本录文为馆员初校稿，\
尚未与原件逐字核对，仅限馆内阅览时参考。
""",
    "lg0005-water-conservancy-1965.txt": """\
敦煌县水利志（油印本，一九六五年）节录

第三章　渠系

全县干渠七条，支渠四十余条，均引党河水。旧时各渠自设渠长，\
分水时常起争执。一九五〇年后成立县水利委员会，统一调度，\
按亩定水，水票由各乡发放。

第四章　拦河坝与防沙

一九五八年冬，全县抽调民工二千余人，于党河上游修筑拦河坝，\
次年春季蓄水。坝体以砂石填筑，外覆草泥，经数年加固，至\
一九六五年可蓄水数百万立方米。

防沙以植树为主，沿渠种植沙枣、红柳、白杨，已成林带三十余里。\
林带之外，冬春季节仍有流沙侵入农田，需每年组织清理。

说明：本志系当年县水利局内部油印，印数甚少。馆藏本第十二页\
至第十五页残缺。
""",
    "ge0001-zhang-genealogy.txt": """\
敦煌张氏族谱（一九九六年续修本）录文（节选）

序：吾张氏原籍山西，清雍正年间随移民西迁，落籍沙州，至今已\
十余世。先祖以耕读传家，垦荒于党河东岸，筑屋三间，凿井一口，\
后世子孙繁衍，遂成村落，今称张家庄。

家训十条（录前四条）：
一、孝敬父母，和睦兄弟。
二、勤于耕作，不误农时。
三、子弟入学，不论贫富。
四、邻里有难，量力相助。

世系：第九世以下涉及在世人员，依馆藏规定不予公开录文。

修谱说明：本谱初修于光绪十二年，民国二十年续修，一九九六年\
族人再修，增补世系并附照片。馆藏为一九九六年复印本，由张氏\
族人捐赠，仅限授权用户查阅。
""",
    "ge0003-yan-zongpu.txt": """\
阎氏宗谱（清光绪刻本）卷首　录文

宗谱者，所以明世系、序长幼也。吾阎氏自始迁祖□□公由甘州\
来沙州，垦田于城西，迄今百五十余年。族人散居城西三乡，丁口\
二百余。

凡例：
一、谱以五世为一图，图后附传。
二、族人有善行者，详书之。
三、女子出嫁者，书其所适之姓氏。
四、每三十年一续修，由族长主之。

祠堂：在城西二里，正屋三楹，春秋二祭，族人毕至。祭田二十亩，\
所入以供祭祀及族中子弟读书之费。

馆员注：原书蓝布封面，线装四册，卷首有破损，部分字迹漫漶，\
以□表示。依捐赠协议，原件及影像仅限馆内阅览。
""",
    "ge0004-suo-jiapu.txt": """\
敦煌索氏家谱（清末抄本）录文节选

此谱为清末族中塾师手抄，记世系十二世，附祖茔图一幅。

世系节录：
一世　讳文远，务农，娶刘氏，生二子。
二世　长子讳世德，次子讳世贤。世德迁居城东，世贤留居祖宅。
三世　世德生三子，长曰廷玉，次曰廷璋，三曰廷珂。

祖茔图说明：祖茔在城东五里沙梁下，坐南朝北，植榆树四株为界。

附记：每年清明，族人于祖茔前聚会，由族长宣读家谱。民国初年\
一度中断，后复行。本抄本由索氏后人于二〇〇九年捐赠本馆。
""",
    "ph0006-temple-fair-caption.txt": """\
照片说明

题名：莫高窟前的庙会集市（约一九五七年）
原件：黑白照片一张，约 12 × 9 厘米，背面有铅笔字“四月初八”。

内容：照片摄于农历四月初八庙会期间。画面中部为临时搭起的\
布棚，棚下摆卖瓜果、布匹和农具；左下角有骆驼歇脚，远处可见\
窟前的杨树林。据捐赠人回忆，当年庙会持续三天，附近各乡村民\
多赶着毛驴车前来，夜间就在树林里露宿。

整理说明：照片由县文化馆旧藏转入本馆，拍摄者不详。此处发布\
的是低分辨率浏览图像。
""",
    "oh0001-water-release.txt": """\
口述史访谈录文：党河放水的日子

受访人：王（化名），男，生于一九三〇年代，城东乡农民
访谈人：本馆地方文献部馆员
访谈时间：二〇一五年七月十二日
访谈地点：受访人家中

问：您小时候村里是怎么分水的？
答：那时候每条渠有个渠长，分水前先在庙里开会，按地多少排\
顺序。轮到谁家，谁家就得半夜起来守着口子，怕上游的人截水。

问：有没有因为水闹过矛盾？
答：有，年年都有。天旱的年份，上下游的人能吵到县里去。后来\
修了坝，按亩发水票，吵得就少了。

问：您记得最清楚的一次放水是什么时候？
答：是我十几岁那年，春天的头一水。全村人都到渠边，水一下来，\
娃娃们跟着水跑，一直跑到地头。

（录文经受访人确认，有删节。）
""",
    "oh0002-camel-drivers.txt": """\
口述史访谈录文：鸣沙山下的驼户

受访人：马（化名），男，生于一九二〇年代，原驼队把式
访谈时间：二〇一九年五月三日

答：我十四岁跟着舅舅拉骆驼，一个驼队二三十峰骆驼，往东走\
安西，往西走到湖滩边上。骆驼驮的是盐、棉花，回来驮茶叶、\
布、铁器。

问：路上最难的是什么？
答：是水。戈壁上走三天见不到一口井，有井的地方，水也是苦的。\
冬天走好些，夏天只能夜里走，白天在红柳滩里歇着。

问：驼队后来怎么样了？
答：汽车通了以后，驼队就慢慢散了。骆驼有的卖了，有的交给社里\
耕地。我后来在队里放羊，一直放到六十岁。

（根据受访人家属要求，本录文在二〇三一年六月三十日之前不予公开。）
""",
    "oh0003-county-school.txt": """\
口述史访谈录文：一九五〇年代的县城小学

受访人：赵（化名），女，退休小学教师
访谈时间：二〇一七年十月二十日

答：我是一九五四年到县城小学教书的，那时候学校在一座旧庙里，\
大殿隔成三间教室，冬天生一个铁炉子，学生自己从家里带柴火。

问：学生多吗？
答：一个班四十多个，年纪大小不一，有的十二三岁才来上一年级。\
农忙的时候请假的多，秋收一过又都回来了。

问：那时候教些什么？
答：语文、算术，还有唱歌、体育。没有课本的时候，我们就自己\
刻蜡版油印。有一年印了一本《乡土常识》，讲党河、鸣沙山、\
月牙泉，学生特别爱看。

（本录文及所附合影涉及在世人员的个人信息，仅限授权用户查阅。）
""",
    "oh0004-caravan-family-en.txt": """\
Oral history transcript: a caravan family on the Silk Road (English translation)

Interviewee: Mr. Ma (pseudonym), born 1931, former camel driver
Interviewer: Local Documents Department, Dunhuang County Library
Date of interview: 8 September 2016
Language of interview: Mandarin (Dunhuang dialect); translated by library staff

Q: How did your family come to keep camels?
A: My grandfather started with two camels he bought after a good melon harvest. By the time
I was born we had eleven. In winter the caravans carried salt and cotton east; in spring they
came back with tea, cloth and iron pots.

Q: What do you remember of the journeys?
A: The nights. We walked at night in summer and slept in the tamarisk in the heat of the day.
My father could tell the way by the stars and by the shape of the dunes, which change every
year, so he said you had to read them again each time.

Q: When did the caravans stop?
A: When the lorries came, around 1958. Some camels were sold, some went to work the fields.
I kept one until 1965. My children have never ridden a camel except for tourists.

(Transcript approved by the interviewee. Shortened for publication.)
""",
    "oh0005-cotton-years.txt": """\
口述史访谈录文：种棉花的年代

受访人：刘（化名），女，生于一九四六年，原生产队妇女队长
访谈时间：二〇一八年八月十五日

答：七十年代县里号召多种棉花，我们队分了一百多亩。棉花娇气，\
春天怕风沙，夏天怕虫，秋天又怕早霜。一到摘棉花的时候，全队\
男女老少都下地，学校也放“棉花假”。

问：那时候一天能摘多少？
答：手快的一天能摘一百来斤，我最多一天摘过一百三十斤，队里\
还给发过一条毛巾当奖励。

问：现在回想起来，最难忘的是什么？
答：是晚上在场院里拣棉花。点着马灯，大家一边拣一边唱歌、讲\
古今，一直干到半夜，第二天照样下地。

（录文经受访人确认。）
""",
    "gi0002-statistics-1985.txt": """\
敦煌县一九八五年国民经济和社会发展统计公报（摘要）

敦煌县统计局　一九八六年三月二十日

一、农业：全年粮食总产量约四万吨，比上年增长百分之三；棉花\
总产量约一千二百吨；瓜类种植面积继续扩大。

二、水利：全年新修、改建渠道三十余公里，新打机井十五眼，\
有效灌溉面积稳定增长。

三、旅游：全年接待国内外游客约十二万人次，其中境外游客约\
一万人次。县城新建宾馆一座。

四、教育：全县有中学九所、小学一百余所，适龄儿童入学率达\
百分之九十以上。县图书馆藏书约六万册。

说明：以上数字均为初步统计，最终数字以年鉴为准。（本公报\
为演示用虚构数据。）
""",
    "gi0005-place-names-1982.txt": """\
敦煌县地名录（一九八二年）节录

说明：本地名录依据地名普查成果编成，收录全县乡镇、村、自然村\
及山川、渠道名称，按汉语拼音排序，并注明位置与得名由来。

月牙泉　泉名。位于县城南约五公里鸣沙山北麓，泉形如新月，故名。

鸣沙山　山名。位于县城南，沙丘连绵，人行沙上或风吹沙动时\
发出声响，故名。

党河　河名。发源于县境南部山地，自南向北流经县城西侧，为全县\
主要灌溉水源。

张家庄　自然村名。清代张姓移民在此开荒建村，故名。

（本地名录原定禁阅期至二〇二〇年一月一日，期满后已开放。）
""",
    "le0001-library-cave-lecture.txt": """\
敦煌讲坛　第十二讲：藏经洞的发现与文献流散（讲稿提纲）

主讲：陈静远　　时间：二〇一八年四月二十一日　　地点：本馆报告厅

一、藏经洞的发现
　　二十世纪初，莫高窟一处洞窟的封闭小室被发现，室内存放大量\
写本、印本、绢画等，时代跨越数百年。

二、文献流散
　　此后数十年间，洞中文献陆续流散，今分藏于国内外多家机构。\
讲座以时间线方式梳理流散经过，不作个人评价。

三、今天的整理与数字化
　　各收藏机构陆续开展编目、影印和数字化工作，研究者已可在线\
查阅大量图像。县级图书馆可以做的是：收集地方相关文献，做好\
本地的口述史与照片档案。

四、讨论题
　　1．地方图书馆在文献数字化中能扮演什么角色？
　　2．如何让普通读者也能看懂古代写本？
""",
}

TRANSCRIPT_LI_FAMILY = """\
李氏家族口述史：从民勤到敦煌（录文节选）

受访人：李（化名）兄妹三人，均生于一九五〇年代
访谈时间：二〇二〇年八月十六日
访谈人：本馆地方文献部馆员

大哥：我们家是一九五六年从民勤搬来的。那年家乡旱得厉害，\
父亲先一个人来敦煌看地方，回去说这边有水，第二年春天就带着\
全家赶着一辆牛车来了，走了十几天。

二妹：刚来的时候住地窝子，半截在地下，冬天倒是暖和。母亲\
把从老家带来的一包菜籽种在门口，第一年就吃上了自己种的菜。

小弟：我是在敦煌出生的。小时候听父母说民勤话，出门跟同学说\
敦煌话，两边来回换，现在两样都说不地道了。

大哥：这张全家福是一九六三年在县城照相馆照的，那时候家里\
刚分到三间新房，父亲说要照张相寄回老家，让亲戚们放心。

（录文经受访人确认，有删节。）
"""

FIELD_NOTES = """\
敦煌遗书调查（一九八七）野外笔记　录文节选
Dunhuang manuscripts survey (1987), field notes, excerpt

七月三日　晴，风大
上午到城西三乡，走访两户。第一户家中藏有残写本两叶，纸色\
黄褐，墨书楷体，首尾均缺，户主称系祖上从庙中得来。测量、\
拍照、登记，编号 87-W-01、87-W-02。

七月四日　晴
下午到南湖一带，村中小庙供桌下发现碎纸一包，多为近代账簿，\
另有一小片疑为早期写本，待回县后请专家鉴定，暂编号 87-S-01。

七月六日　阴
整理三天记录，共登记疑似写本残片七件、近代文书二十一件。\
所有原件均留在原处，由持有人自行保管，本队只做登记与拍照。

July 6. Summary for the English report: seven possible manuscript fragments and
twenty-one modern documents recorded; nothing removed from the owners.
"""

PDFS: dict[str, tuple[str, list[list[str]]]] = {
    "lg0001-daoguang-juan1.pdf": (
        "Dunhuang County Gazetteer (Daoguang edition), juan 1",
        [
            [
                "Juan 1: Geography (yudi zhi). Digitised from a woodblock-printed copy held in "
                "the library's rare-book room.",
                "Contents: the county town and its four gates; Mingsha Mountain and the "
                "Crescent Moon Spring; the Dang River and its ten irrigation canals; the "
                "boundaries of the county and its ten rural districts.",
                "In this demonstration sample the page images are replaced by this short "
                "description. A full transcription (in Chinese) is attached as a separate "
                "text file.",
            ],
            [
                "Condition: insect damage on several leaves; missing characters are marked "
                "with an empty square in the transcription.",
                "Please check the original images before quoting the transcription.",
            ],
        ],
    ),
    "lg0002-minguo-1935.pdf": (
        "Revised Dunhuang County Gazetteer (1935)",
        [
            [
                "Compiled by the county gazetteer bureau in 1935 and printed in a small run "
                "by a provincial printing house.",
                "Eight volumes: geography, water works, population, taxes, schools, "
                "biographies, literature and miscellany. A folding map of the county is "
                "bound into volume one; it is published separately as an image.",
                "This PDF is a stand-in for the scanned volumes in the demo sample.",
            ]
        ],
    ),
    "lg0005-water-conservancy-1965.pdf": (
        "Water Conservancy Records of Dunhuang County (1965)",
        [
            [
                "Mimeographed for internal use by the county water conservancy bureau.",
                "Chapter 3 describes seven main canals and more than forty branch canals fed "
                "by the Dang River; chapter 4 the weir built in the winter of 1958 and the "
                "shelter belts planted against drifting sand.",
                "Pages 12 to 15 are missing from the library's copy.",
            ]
        ],
    ),
    "lg0006-gazetteer-survey-en.pdf": (
        "A Survey of Dunhuang Local Gazetteers, 1831-1994",
        [
            [
                "This short guide lists the local gazetteers of Dunhuang County held by the "
                "county library and explains how they relate to one another.",
                "1. The Daoguang edition (1831): woodblock print, the oldest complete "
                "gazetteer of the county in the collection.",
                "2. The Shazhou local records (c. 1908): a manuscript draft in two volumes, "
                "never printed; consulted in the reading room only.",
                "3. The revised gazetteer (1935): printed, with a folding county map.",
                "4. The water conservancy records (1965): a mimeographed specialist gazetteer.",
                "5. The county gazetteer of 1994: a modern printed edition, catalogued but "
                "not digitised.",
            ],
            [
                "How to use them: the older gazetteers copy large passages from one another, "
                "so a passage found in 1935 may go back to 1831. Always compare editions.",
                "All digitised gazetteers are available on the national digital-library "
                "network; search by the identifiers beginning with DHX-LG.",
                "Written by the Local Documents Department, 2021. Licensed CC BY 4.0.",
            ],
        ],
    ),
    "ge0002-li-jiacheng.pdf": (
        "Li Family Records (1988 manuscript copy)",
        [
            [
                "A family record compiled by members of a Li family of Dunhuang in 1988, "
                "continuing an older genealogy lost in the 1960s.",
                "It contains names, birth dates and addresses of living persons. Access is "
                "therefore restricted to authorised users under the deposit agreement.",
                "This PDF stands in for the 46 scanned pages in the demo sample.",
            ]
        ],
    ),
    "gi0001-tree-planting-notice-1983.pdf": (
        "Notice on Spring Tree Planting (1983)",
        [
            [
                "Issued by the Dunhuang County People's Government, 5 March 1983.",
                "Every commune is asked to plant shelter belts along the main canals before "
                "the end of April, to repair belts damaged by the winter sandstorms, and to "
                "report the number of trees planted to the county forestry station.",
                "Schools are encouraged to take part on the Saturday nearest to 12 March.",
                "(English summary of a Chinese official notice; invented for the demo.)",
            ]
        ],
    ),
    "gi0002-statistics-1985.pdf": (
        "Statistical Communique of Dunhuang County, 1985",
        [
            [
                "Published by the county statistics bureau on 20 March 1986.",
                "Agriculture: grain output about 40,000 tonnes, cotton about 1,200 tonnes.",
                "Water works: more than 30 km of canals built or rebuilt; 15 new wells.",
                "Tourism: about 120,000 visitors, of whom about 10,000 from abroad.",
                "Education: 9 secondary schools and more than 100 primary schools.",
                "All figures are invented for the demonstration sample.",
            ]
        ],
    ),
    "gi0003-work-report-1986.pdf": (
        "Work Report of the County People's Government (1986)",
        [
            [
                "Delivered to the county people's congress in spring 1986.",
                "Part 1 reviews 1985: irrigation, cotton, the new guest house, schools. "
                "Part 2 sets the tasks for 1986: roads to the villages, protection of the "
                "oasis against sand, a new building for the county library.",
                "Available to member libraries of the network only, pending a rights review.",
            ]
        ],
    ),
    "gi0004-tourist-guide-1986.pdf": (
        "Dunhuang County Tourist Guide (1986)",
        [
            [
                "Welcome to Dunhuang, an oasis town on the old Silk Road.",
                "Mingsha Mountain and the Crescent Moon Spring lie 5 km south of the town. "
                "Camel rides are available at the foot of the dunes from May to October.",
                "The Mogao Caves are 25 km south-east of the town; buses leave the county "
                "guest house every morning at 8 o'clock.",
            ],
            [
                "Practical information: the best seasons are late spring and early autumn. "
                "Summer days are hot and dry; bring a hat and drinking water.",
                "Local specialities: melons, apricots, and hand-pulled noodles.",
                "Published by the county tourism bureau. (Invented for the siku demo.)",
            ],
        ],
    ),
    "le0001-library-cave-lecture.pdf": (
        "Dunhuang Lectures No. 12: The Library Cave",
        [
            [
                "Slides for a public lecture given at the county library on 21 April 2018.",
                "1. The discovery of the sealed chamber at the beginning of the 20th century.",
                "2. How its manuscripts, prints and paintings came to be dispersed.",
                "3. Cataloguing and digitisation today; what a county library can contribute.",
                "Speaker notes in Chinese are attached as a text file.",
            ]
        ],
    ),
    "le0002-manuscripts-survey-notes.pdf": (
        "Dunhuang Manuscripts Survey: Methods and Findings",
        [
            [
                "Lecture notes, 2 November 2019.",
                "In the summer of 1987 a small team from the county recorded manuscript "
                "fragments kept in village temples and private homes. The team did not "
                "collect anything: it measured, photographed and registered each item, and "
                "left it with its owner.",
                "Method: a numbered register (87-W for the western districts, 87-S for the "
                "southern lakes), a field notebook, and sketches of the places visited.",
            ],
            [
                "Findings: seven possible early manuscript fragments and twenty-one modern "
                "documents such as account books and contracts.",
                "Lessons: register first, interpret later; record the owner's own account of "
                "where an item came from; return to the same households after ten years.",
                "The survey archive is available as a BagIt package in the sample collection.",
            ],
        ],
    ),
    "le0003-post-stations-lecture.pdf": (
        "Dunhuang Lectures No. 15: Post Stations and Beacon Towers",
        [
            [
                "Public lecture, 15 June 2019.",
                "Post stations and beacon towers along the old roads west of Dunhuang: what "
                "remains on the ground, how they were spaced, and how travellers used them.",
                "The lecture closes with a walk along a canal-side path on the library's "
                "local-history map.",
            ]
        ],
    ),
}

BAG_REPORT = (
    "Dunhuang Manuscripts Survey, 1987: Report",
    [
        [
            "Report of the county survey of manuscript fragments held in village temples and "
            "private households, July 1987.",
            "Team: three staff members of the county cultural centre and one librarian.",
            "Area: the western districts and the southern lakes of Dunhuang County.",
            "Method: each item was measured, photographed and entered in a register; no item "
            "was removed from its owner.",
        ],
        [
            "Results: 7 possible early manuscript fragments (87-W-01 to 87-W-05, 87-S-01, "
            "87-S-02) and 21 modern documents.",
            "Recommendation: repeat the survey in ten years and deposit copies of the "
            "photographs in the county library.",
            "This bag contains the report, the field notes and a sketch of a cave facade.",
        ],
    ],
)


# --------------------------------------------------------------------------------------------
# The catalogue.
# --------------------------------------------------------------------------------------------

Row = dict[str, str | list[str]]

LIB = {"publisher@zh": LIBRARY_ZH, "publisher@en": LIBRARY_EN}
PLACE = {"coverage@zh": "敦煌", "coverage@en": "Dunhuang"}
DIGITISED = {
    "contributor@zh": "敦煌县图书馆（数字化）",
    "contributor@en": "Dunhuang County Library (digitisation)",
}
INTERVIEWER = {"contributor@zh": "敦煌县图书馆地方文献部（访谈、整理）"}


def rows() -> list[Row]:
    rs: list[Row] = [
        {
            "identifier": "DHX-LG-0001",
            "title@zh": "敦煌县志（道光本）卷一　舆地志",
            "title@en": "Dunhuang County Gazetteer (Daoguang edition), juan 1: Geography",
            "creator@zh": "（清）周廷栋 纂修",
            "creator@en": "Zhou Tingdong (Qing dynasty), compiler",
            "subject@zh": ["地方志", "舆地", "党河", "鸣沙山"],
            "subject@en": ["Local gazetteers", "Historical geography", "Dang River"],
            "description@zh": "清道光刻本《敦煌县志》卷一说明与录文，记县城、山川、渠道与疆域。",
            "description@en": "Juan 1 of a Daoguang-era woodblock edition of the county gazetteer: "
            "town walls, mountains, canals and boundaries. Description and transcription.",
            "date": "1831",
            "type": "Text",
            "language": "zh",
            "source": "馆藏古籍，索书号 地001",
            "collection": "local-gazetteers",
            "access": "open",
            "rights": RS.format("NKC"),
            "license": PDM,
            "files": ["files/lg0001-daoguang-juan1.pdf", "files/lg0001-daoguang-juan1.txt"],
            **LIB,
            **PLACE,
            **DIGITISED,
        },
        {
            "identifier": "DHX-LG-0002",
            "title@zh": "重修敦煌县志（民国二十四年）附县境全图",
            "title@en": "Revised Dunhuang County Gazetteer (1935), with a map of the county",
            "creator@zh": "敦煌县修志局",
            "creator@en": "Dunhuang County Gazetteer Bureau",
            "subject@zh": ["地方志", "地图"],
            "subject@en": ["Local gazetteers", "Maps"],
            "description@zh": "民国二十四年重修县志，八卷；卷首附县境全图一幅。",
            "description@en": "The 1935 revised county gazetteer in eight volumes, "
            "with the folding county map bound into volume one.",
            "date": "1935",
            "type": ["Text", "StillImage"],
            "language": "zh",
            "relation": "DHX-PH-0005",
            "collection": "local-gazetteers",
            "access": "open",
            "rights": RS.format("NKC"),
            "license": PDM,
            "files": ["files/lg0002-minguo-1935.pdf", "files/lg0002-county-map-1935.png"],
            **LIB,
            **PLACE,
            **DIGITISED,
        },
        {
            "identifier": "DHX-LG-0003",
            "title@zh": "敦煌县志（一九九四年版）",
            "title@en": "Dunhuang County Gazetteer (1994 edition)",
            "creator@zh": "敦煌县志编纂委员会",
            "creator@en": "Dunhuang County Gazetteer Compilation Committee",
            "subject@zh": ["地方志"],
            "subject@en": ["Local gazetteers"],
            "description@zh": "新编县志，精装两册。仅有书目记录，未数字化，可到馆借阅纸本。",
            "description@en": "Modern printed gazetteer in two volumes. Catalogue record only: "
            "not digitised; the printed copy can be borrowed at the library.",
            "publisher@zh": "河西文史出版社",
            "publisher@en": "Hexi Wenshi Press",
            "date": "1994",
            "type": "Text",
            "language": "zh",
            "source": "馆藏纸本，索书号 K294.24/1994",
            "collection": "local-gazetteers",
            "access": "open",
            "rights": RS.format("InC"),
            **PLACE,
        },
        {
            "identifier": "DHX-LG-0004",
            "title@zh": "沙州乡土志（稿本）第一册",
            "title@en": "Shazhou Local Records (manuscript draft), volume 1",
            "creator@zh": "佚名",
            "creator@en": "Anonymous",
            "subject@zh": ["乡土志", "稿本", "物产"],
            "subject@en": ["Local gazetteers", "Manuscripts"],
            "description@zh": "清末未刊稿本，字迹潦草、涂改甚多。原件脆弱，影像仅限馆内阅览。",
            "description@en": "Unpublished late-Qing manuscript draft; fragile. "
            "Images may be viewed in the library's reading room only.",
            "date": "1908",
            "type": ["StillImage", "Text"],
            "language": "zh",
            "collection": "local-gazetteers",
            "access": "onsite",
            "rights": RS.format("UND"),
            "files": ["files/lg0004-shazhou-draft-p1.png", "files/lg0004-shazhou-draft.txt"],
            **LIB,
            **PLACE,
            **DIGITISED,
        },
        {
            "identifier": "DHX-LG-0005",
            "title@zh": "敦煌县水利志（油印本）",
            "title@en": "Water Conservancy Records of Dunhuang County (mimeograph)",
            "creator@zh": "敦煌县水利局",
            "creator@en": "Dunhuang County Water Conservancy Bureau",
            "subject@zh": ["水利", "党河", "防沙"],
            "subject@en": ["Irrigation", "Dang River", "Desertification"],
            "description@zh": "一九六五年内部油印的专志，记渠系、拦河坝与防沙林带。",
            "description@en": "Internally mimeographed specialist gazetteer of 1965: "
            "canals, the river weir and shelter belts.",
            "date": "1965",
            "type": "Text",
            "language": "zh",
            "collection": "local-gazetteers",
            "access": "open",
            "rights": RS.format("CNE"),
            "files": [
                "files/lg0005-water-conservancy-1965.pdf",
                "files/lg0005-water-conservancy-1965.txt",
            ],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-LG-0006",
            "title@en": "A Survey of Dunhuang Local Gazetteers, 1831-1994",
            "title@zh": "敦煌地方志概览（英文）",
            "creator@en": "Dunhuang County Library, Local Documents Department",
            "subject@en": ["Local gazetteers", "Bibliography", "Reference guides"],
            "description@en": "A short English guide to the county's gazetteers "
            "and how the editions relate to one another.",
            "date": "2021",
            "type": "Text",
            "language": "en",
            "collection": "local-gazetteers",
            "access": "open",
            "rights": RS.format("InC"),
            "license": CC_BY,
            "files": ["files/lg0006-gazetteer-survey-en.pdf"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-GE-0001",
            "title@zh": "敦煌张氏族谱（一九九六年续修本）",
            "title@en": "Zhang Family Genealogy of Dunhuang (1996 revision)",
            "creator@zh": "张氏族谱续修委员会",
            "creator@en": "Zhang Family Genealogy Revision Committee",
            "subject@zh": ["家谱", "张氏", "移民"],
            "subject@en": ["Genealogy", "Zhang family", "Migration"],
            "description@zh": "族人捐赠的复印本，含在世人员信息，仅限授权用户查阅。",
            "description@en": "Photocopy donated by the family. Contains personal data of living "
            "persons; restricted to authorised users.",
            "date": "1996",
            "type": ["Text", "StillImage"],
            "language": "zh",
            "collection": "genealogies",
            "access": "restricted",
            "rights": RS.format("InC"),
            "files": ["files/ge0001-zhang-genealogy.txt", "files/ge0001-zhang-lineage-chart.png"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-GE-0002",
            "title@zh": "李氏家乘（一九八八年抄本）",
            "title@en": "Li Family Records (1988 manuscript copy)",
            "creator@zh": "李氏族人",
            "creator@en": "Members of the Li family",
            "subject@zh": ["家谱", "李氏"],
            "subject@en": ["Genealogy", "Li family"],
            "description@zh": "一九八八年族人据旧谱补修的抄本，四十六页，含在世人员信息。",
            "description@en": "A 1988 manuscript family record, 46 pages, with personal data of "
            "living persons. Restricted under the deposit agreement.",
            "date": "1988",
            "type": "Text",
            "language": "zh",
            "collection": "genealogies",
            "access": "restricted",
            "rights": RS.format("InC"),
            "files": ["files/ge0002-li-jiacheng.pdf"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-GE-0003",
            "title@zh": "阎氏宗谱（清光绪刻本）卷首",
            "title@en": "Yan Clan Genealogy (Guangxu woodblock edition), front matter",
            "creator@zh": "阎氏族人",
            "creator@en": "Members of the Yan clan",
            "subject@zh": ["家谱", "宗祠", "刻本"],
            "subject@en": ["Genealogy", "Ancestral halls", "Woodblock printing"],
            "description@zh": "光绪年间刻本，线装四册。依捐赠协议，原件及影像仅限馆内阅览。",
            "description@en": "Guangxu-era woodblock print, four stitched volumes. Under the "
            "donation agreement, images may be viewed on site only.",
            "date": "1886",
            "type": ["StillImage", "Text"],
            "language": "zh",
            "collection": "genealogies",
            "access": "onsite",
            "rights": RS.format("NoC-CR"),
            "files": ["files/ge0003-yan-zongpu-p1.png", "files/ge0003-yan-zongpu.txt"],
            **LIB,
            **PLACE,
            **DIGITISED,
        },
        {
            "identifier": "DHX-GE-0004",
            "title@zh": "敦煌索氏家谱（清末抄本）",
            "title@en": "Suo Family Genealogy of Dunhuang (late-Qing manuscript copy)",
            "creator@zh": "索氏族中塾师 抄录",
            "creator@en": "Copied by the Suo family tutor",
            "subject@zh": ["家谱", "索氏", "祖茔"],
            "subject@en": ["Genealogy", "Suo family", "Family graves"],
            "description@zh": "清末抄本，记世系十二世，附祖茔图。二〇〇九年索氏后人捐赠。",
            "description@en": "Late-Qing manuscript recording twelve generations, "
            "with a plan of the family graves. Donated in 2009.",
            "date": "1905",
            "type": ["StillImage", "Text"],
            "language": "zh",
            "collection": "genealogies",
            "access": "open",
            "rights": RS.format("NKC"),
            "license": PDM,
            "files": ["files/ge0004-suo-jiapu-p1.png", "files/ge0004-suo-jiapu.txt"],
            **LIB,
            **PLACE,
            **DIGITISED,
        },
        {
            "identifier": "DHX-GE-0005",
            "title@zh": "敦煌姓氏源流考",
            "title@en": "Origins of Dunhuang Surnames",
            "creator@zh": "马文清",
            "creator@en": "Ma Wenqing",
            "subject@zh": ["姓氏", "家谱研究"],
            "subject@en": ["Surnames", "Genealogy"],
            "description@zh": "研究专著，仅有书目记录，未数字化。",
            "description@en": "A monograph. Catalogue record only; not digitised.",
            "publisher@zh": "河西文史出版社",
            "publisher@en": "Hexi Wenshi Press",
            "date": "2008",
            "type": "Text",
            "language": "zh",
            "source": "馆藏纸本，索书号 K810.2/12",
            "collection": "genealogies",
            "access": "open",
            "rights": RS.format("InC"),
            **PLACE,
        },
        {
            "identifier": "DHX-PH-0001",
            "title@zh": "月牙泉旧影",
            "title@en": "Crescent Moon Spring, an old photograph",
            "creator@zh": "佚名",
            "creator@en": "Unknown photographer",
            "subject@zh": ["月牙泉", "鸣沙山", "老照片"],
            "subject@en": ["Crescent Moon Spring", "Photographs"],
            "description@zh": "黑白照片，泉边有小亭一座，远处为沙山。",
            "description@en": "Black-and-white photograph of the spring with a small pavilion.",
            "date": "1956",
            "type": "StillImage",
            "collection": "photographs",
            "access": "open",
            "rights": RS.format("UND"),
            "files": ["files/ph0001-crescent-spring.png"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-PH-0002",
            "title@zh": "鸣沙山驼队",
            "title@en": "Camel caravan on Mingsha Mountain",
            "creator@zh": "佚名",
            "creator@en": "Unknown photographer",
            "subject@zh": ["骆驼", "鸣沙山", "交通"],
            "subject@en": ["Camels", "Caravans", "Transport"],
            "description@zh": "沙脊上行进的六峰骆驼与一名驼夫。",
            "description@en": "Six camels and a driver crossing a dune ridge.",
            "date": "1962",
            "type": "StillImage",
            "collection": "photographs",
            "access": "open",
            "rights": RS.format("UND"),
            "files": ["files/ph0002-caravan.png"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-PH-0003",
            "title@zh": "敦煌县城东门（一九四八年）",
            "title@en": "East Gate of the county town, 1948",
            "creator@zh": "佚名",
            "creator@en": "Unknown photographer",
            "subject@zh": ["城门", "城墙", "老照片"],
            "subject@en": ["City gates", "City walls"],
            "description@zh": "拆除前的县城东门及城楼。权利人无法确认，仅限成员馆网络内浏览。",
            "description@en": "The east gate and its tower before demolition. Rights holder "
            "unidentified; viewable within the library network only.",
            "date": "1948",
            "type": "StillImage",
            "collection": "photographs",
            "access": "network",
            "rights": RS.format("InC-RUU"),
            "files": ["files/ph0003-east-gate-1948.png"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-PH-0004",
            "title@zh": "党河水库施工现场",
            "title@en": "Building the Dang River reservoir",
            "creator@zh": "敦煌县文化馆",
            "creator@en": "Dunhuang County Cultural Centre",
            "subject@zh": ["水利", "水库", "党河"],
            "subject@en": ["Irrigation", "Reservoirs", "Dang River"],
            "description@zh": "大坝施工现场，坝上民工众多。",
            "description@en": "Workers on the dam during construction.",
            "date": "1975",
            "type": "StillImage",
            "collection": "photographs",
            "access": "open",
            "rights": RS.format("InC-EDU"),
            "files": ["files/ph0004-reservoir.png"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-PH-0005",
            "title@zh": "敦煌县境全图（民国二十四年）",
            "title@en": "Map of Dunhuang County (1935)",
            "creator@zh": "敦煌县修志局",
            "creator@en": "Dunhuang County Gazetteer Bureau",
            "subject@zh": ["地图", "党河", "渠道"],
            "subject@en": ["Maps", "Dang River", "Canals"],
            "description@zh": "计里画方县境图，示党河、渠道、县城与南山。原附于民国县志卷首。",
            "description@en": "Gridded map of the county showing the Dang River, canals, "
            "the town and the southern mountains; bound into the 1935 gazetteer.",
            "date": "1935",
            "type": "StillImage",
            "relation": "DHX-LG-0002",
            "collection": "photographs",
            "access": "open",
            "rights": RS.format("NKC"),
            "license": PDM,
            "files": ["files/ph0005-county-map-1935.png"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-PH-0006",
            "title@zh": "莫高窟前的庙会集市",
            "title@en": "Temple fair in front of the Mogao Caves",
            "creator@zh": "佚名",
            "creator@en": "Unknown photographer",
            "subject@zh": ["庙会", "集市", "莫高窟"],
            "subject@en": ["Fairs", "Markets", "Mogao Caves"],
            "description@zh": "农历四月初八庙会，布棚、人群与歇脚的骆驼。附照片说明。",
            "description@en": "The fair on the eighth day of the fourth lunar month: stalls, "
            "crowds and a resting camel. With a caption sheet.",
            "date": "1957",
            "type": ["StillImage", "Text"],
            "language": "zh",
            "collection": "photographs",
            "access": "open",
            "rights": RS.format("CNE"),
            "files": ["files/ph0006-temple-fair.png", "files/ph0006-temple-fair-caption.txt"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-OH-0001",
            "title@zh": "口述史：党河放水的日子",
            "title@en": "Oral history: the days of the Dang River water release",
            "creator@zh": "王（化名）口述",
            "creator@en": "Wang (pseudonym), interviewee",
            "subject@zh": ["口述史", "灌溉", "党河"],
            "subject@en": ["Oral history", "Irrigation"],
            "description@zh": "一位老农讲述旧时按户轮灌、守夜看水的经历。",
            "description@en": "An old farmer remembers the canal rota and night watches.",
            "date": "2015-07-12",
            "type": "Text",
            "language": "zh",
            "collection": "oral-history",
            "access": "open",
            "rights": RS.format("InC"),
            "license": CC_BY_NC,
            "files": ["files/oh0001-water-release.txt"],
            **LIB,
            **PLACE,
            **INTERVIEWER,
        },
        {
            "identifier": "DHX-OH-0002",
            "title@zh": "口述史：鸣沙山下的驼户",
            "title@en": "Oral history: camel drivers below Mingsha Mountain",
            "creator@zh": "马（化名）口述",
            "creator@en": "Ma (pseudonym), interviewee",
            "subject@zh": ["口述史", "驼队", "交通"],
            "subject@en": ["Oral history", "Caravans"],
            "description@zh": "原驼队把式回忆驼运生活。应家属要求，二〇三一年六月三十日前不公开。",
            "description@en": "A former caravan driver remembers the salt and cotton trade. "
            "Embargoed at the family's request until 30 June 2031.",
            "date": "2019-05-03",
            "type": "Text",
            "language": "zh",
            "collection": "oral-history",
            "access": "embargoed",
            "embargo_until": "2031-06-30",
            "rights": RS.format("InC"),
            "files": ["files/oh0002-camel-drivers.txt"],
            **LIB,
            **PLACE,
            **INTERVIEWER,
        },
        {
            "identifier": "DHX-OH-0003",
            "title@zh": "口述史：一九五〇年代的县城小学",
            "title@en": "Oral history: the county primary school in the 1950s",
            "creator@zh": "赵（化名）口述",
            "creator@en": "Zhao (pseudonym), interviewee",
            "subject@zh": ["口述史", "教育", "小学"],
            "subject@en": ["Oral history", "Education"],
            "description@zh": "退休教师回忆五十年代的县城小学，附一九五六年师生合影。",
            "description@en": "A retired teacher on the county school in the 1950s, "
            "with a class photograph of 1956. Restricted: personal data.",
            "date": "2017-10-20",
            "type": ["Text", "StillImage"],
            "language": "zh",
            "collection": "oral-history",
            "access": "restricted",
            "rights": RS.format("InC"),
            "files": ["files/oh0003-county-school.txt", "files/oh0003-class-photo-1956.png"],
            **LIB,
            **PLACE,
            **INTERVIEWER,
        },
        {
            "identifier": "DHX-OH-0004",
            "title@en": "Oral history: a caravan family on the Silk Road (English translation)",
            "title@zh": "口述史：丝路驼队人家（英译本）",
            "creator@en": "Ma (pseudonym), interviewee",
            "subject@en": ["Oral history", "Silk Road", "Caravans"],
            "subject@zh": ["口述史", "丝绸之路"],
            "description@en": "English translation of an interview with a former camel driver "
            "about his family's caravans, c. 1935-1965.",
            "date": "2016-09-08",
            "type": "Text",
            "language": "en",
            "collection": "oral-history",
            "access": "open",
            "rights": RS.format("InC"),
            "license": CC_BY,
            "files": ["files/oh0004-caravan-family-en.txt"],
            "contributor@en": "Dunhuang County Library (interview and translation)",
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-OH-0005",
            "title@zh": "口述史：种棉花的年代",
            "title@en": "Oral history: the cotton-growing years",
            "creator@zh": "刘（化名）口述",
            "creator@en": "Liu (pseudonym), interviewee",
            "subject@zh": ["口述史", "棉花", "农业"],
            "subject@en": ["Oral history", "Cotton", "Agriculture"],
            "description@zh": "原生产队妇女队长讲述七十年代种棉、摘棉的集体生活。",
            "description@en": "A former team leader on cotton growing in the 1970s.",
            "date": "2018-08-15",
            "type": "Text",
            "language": "zh",
            "collection": "oral-history",
            "access": "open",
            "rights": RS.format("InC"),
            "license": CC_BY_NC,
            "files": ["files/oh0005-cotton-years.txt"],
            **LIB,
            **PLACE,
            **INTERVIEWER,
        },
        {
            "identifier": "DHX-GI-0001",
            "title@zh": "敦煌县人民政府关于开展春季植树造林的通知",
            "title@en": "Notice of the County People's Government on spring tree planting",
            "creator@zh": "敦煌县人民政府",
            "creator@en": "Dunhuang County People's Government",
            "subject@zh": ["政府公文", "植树造林", "防沙"],
            "subject@en": ["Government information", "Afforestation"],
            "description@zh": "一九八三年春季植树通知（英文摘要）。",
            "description@en": "The 1983 notice on planting shelter belts (English summary).",
            "date": "1983-03-05",
            "type": "Text",
            "language": "en",
            "collection": "government-information",
            "access": "open",
            "rights": RS.format("NKC"),
            "files": ["files/gi0001-tree-planting-notice-1983.pdf"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-GI-0002",
            "title@zh": "敦煌县一九八五年国民经济和社会发展统计公报",
            "title@en": "Statistical communique of Dunhuang County, 1985",
            "creator@zh": "敦煌县统计局",
            "creator@en": "Dunhuang County Statistics Bureau",
            "subject@zh": ["政府公文", "统计"],
            "subject@en": ["Government information", "Statistics"],
            "description@zh": "农业、水利、旅游、教育等主要统计数字（演示用虚构数据）。",
            "description@en": "Main figures for agriculture, water works, tourism and education "
            "(invented figures).",
            "date": "1986-03-20",
            "type": "Text",
            "language": ["zh", "en"],
            "collection": "government-information",
            "access": "open",
            "rights": RS.format("NKC"),
            "files": ["files/gi0002-statistics-1985.pdf", "files/gi0002-statistics-1985.txt"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-GI-0003",
            "title@zh": "敦煌县人民政府工作报告（一九八六年）",
            "title@en": "Work report of the County People's Government (1986)",
            "creator@zh": "敦煌县人民政府",
            "creator@en": "Dunhuang County People's Government",
            "subject@zh": ["政府公文", "工作报告"],
            "subject@en": ["Government information", "Annual reports"],
            "description@zh": "权利状况待核实，暂仅限成员馆网络内浏览。",
            "description@en": "Pending a rights review, viewable within the library network only.",
            "date": "1986",
            "type": "Text",
            "language": "en",
            "collection": "government-information",
            "access": "network",
            "rights": RS.format("CNE"),
            "files": ["files/gi0003-work-report-1986.pdf"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-GI-0004",
            "title@en": "Dunhuang County Tourist Guide (1986)",
            "title@zh": "敦煌县旅游指南（英文版，一九八六年）",
            "creator@en": "Dunhuang County Tourism Bureau",
            "creator@zh": "敦煌县旅游局",
            "subject@en": ["Tourism", "Mingsha Mountain", "Mogao Caves"],
            "description@en": "A two-page English leaflet for foreign visitors.",
            "date": "1986",
            "type": "Text",
            "language": "en",
            "collection": "government-information",
            "access": "open",
            "rights": RS.format("InC-EDU"),
            "files": ["files/gi0004-tourist-guide-1986.pdf"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-GI-0005",
            "title@zh": "敦煌县地名录（一九八二年）",
            "title@en": "Place names of Dunhuang County (1982)",
            "creator@zh": "敦煌县地名委员会",
            "creator@en": "Dunhuang County Place Names Committee",
            "subject@zh": ["地名", "政府公文"],
            "subject@en": ["Place names", "Government information"],
            "description@zh": "地名普查成果节录。禁阅期已于二〇二〇年一月一日届满。",
            "description@en": "Excerpt of the place-name census. The embargo ended on "
            "1 January 2020.",
            "date": "1982",
            "type": "Text",
            "language": "zh",
            "collection": "government-information",
            "access": "embargoed",
            "embargo_until": "2020-01-01",
            "rights": RS.format("InC"),
            "files": ["files/gi0005-place-names-1982.txt"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-LE-0001",
            "title@zh": "敦煌讲坛第十二讲：藏经洞的发现与文献流散",
            "title@en": "Dunhuang Lectures No. 12: the Library Cave and the dispersal "
            "of its manuscripts",
            "creator@zh": "陈静远",
            "creator@en": "Chen Jingyuan",
            "subject@zh": ["讲座", "藏经洞", "敦煌遗书"],
            "subject@en": ["Lectures", "Dunhuang manuscripts"],
            "description@zh": "公益讲座讲稿提纲与幻灯片。",
            "description@en": "Outline (Chinese) and slides (English) of a public lecture.",
            "date": "2018-04-21",
            "type": "Text",
            "language": ["zh", "en"],
            "collection": "lectures",
            "access": "open",
            "rights": RS.format("InC"),
            "license": CC_BY,
            "files": [
                "files/le0001-library-cave-lecture.pdf",
                "files/le0001-library-cave-lecture.txt",
            ],
            **LIB,
        },
        {
            "identifier": "DHX-LE-0002",
            "title@en": "Dunhuang Manuscripts Survey: Methods and Findings",
            "title@zh": "敦煌遗书调查：方法与发现（讲义）",
            "creator@en": "Hollis, Margaret",
            "subject@en": ["Lectures", "Dunhuang manuscripts", "Field surveys"],
            "subject@zh": ["讲座", "敦煌遗书", "田野调查"],
            "description@en": "Lecture notes on the 1987 county survey of manuscript fragments.",
            "date": "2019-11-02",
            "type": "Text",
            "language": "en",
            "relation": "Dunhuang Manuscripts Survey, 1987 (BagIt package dunhuang-survey-1987)",
            "collection": "lectures",
            "access": "open",
            "rights": RS.format("InC"),
            "license": CC_BY,
            "files": ["files/le0002-manuscripts-survey-notes.pdf"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-LE-0003",
            "title@zh": "敦煌讲坛第十五讲：丝绸之路上的驿站与烽燧",
            "title@en": "Dunhuang Lectures No. 15: post stations and beacon towers",
            "creator@zh": ["陈静远", "刘安"],
            "creator@en": ["Chen Jingyuan", "Liu An"],
            "subject@zh": ["讲座", "丝绸之路", "驿站"],
            "subject@en": ["Lectures", "Silk Road"],
            "description@en": "Slides of a public lecture (English).",
            "date": "2019-06-15",
            "type": "Text",
            "language": "en",
            "collection": "lectures",
            "access": "open",
            "rights": RS.format("InC"),
            "license": CC_BY,
            "files": ["files/le0003-post-stations-lecture.pdf"],
            **LIB,
            **PLACE,
        },
        {
            "identifier": "DHX-LE-0004",
            "title@en": "Silk Road Travel Diaries: A Reader",
            "title@zh": "丝路旅行日记选读",
            "creator@en": "Avery, Thomas (editor)",
            "subject@en": ["Silk Road", "Travel writing", "Diaries"],
            "description@en": "Course reader of travel diaries, used for the library's lecture "
            "series. Catalogue record only; not digitised.",
            "publisher@en": "Hexi Wenshi Press",
            "publisher@zh": "河西文史出版社",
            "date": "2003",
            "type": "Text",
            "language": "en",
            "source": "Printed copy, call number K928.6/3",
            "collection": "lectures",
            "access": "open",
            "rights": RS.format("InC"),
        },
    ]
    return rs


CSV_COLUMNS = [
    "identifier",
    "title@zh",
    "title@en",
    "creator@zh",
    "creator@en",
    "contributor@zh",
    "contributor@en",
    "subject@zh",
    "subject@en",
    "description@zh",
    "description@en",
    "publisher@zh",
    "publisher@en",
    "date",
    "type",
    "format",
    "language",
    "coverage@zh",
    "coverage@en",
    "source",
    "relation",
    "collection",
    "access",
    "embargo_until",
    "rights",
    "license",
    "files",
]


# --------------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------------


def photos() -> dict[str, Callable[[], Canvas]]:
    """Every PNG in files/, by name; each picture has its own seeded generator."""
    return {
        "lg0004-shazhou-draft-p1.png": lambda: scan_manuscript(Rng("lg0004")),
        "ge0001-zhang-lineage-chart.png": lambda: scan_lineage_chart(Rng("ge0001")),
        "ge0003-yan-zongpu-p1.png": lambda: scan_woodblock(Rng("ge0003")),
        "ge0004-suo-jiapu-p1.png": lambda: scan_manuscript_with_plan(Rng("ge0004")),
        "ph0001-crescent-spring.png": lambda: photo_crescent_spring(Rng("ph0001")),
        "ph0002-caravan.png": lambda: photo_caravan(Rng("ph0002")),
        "ph0003-east-gate-1948.png": lambda: photo_east_gate(Rng("ph0003")),
        "ph0004-reservoir.png": lambda: photo_reservoir(Rng("ph0004")),
        "ph0006-temple-fair.png": lambda: photo_temple_fair(Rng("ph0006")),
        "oh0003-class-photo-1956.png": lambda: photo_group(Rng("oh0003"), 3, 7, studio=False),
    }


def cell(value: str | list[str]) -> str:
    return "||".join(value) if isinstance(value, list) else value


def file_formats(files: list[str]) -> list[str]:
    out: list[str] = []
    for f in files:
        mime = MIME[Path(f).suffix]
        if mime not in out:
            out.append(mime)
    return out


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_files(out: Path) -> None:
    files = out / "files"
    for name, text in TXT.items():
        write_text(files / name, text)
    for name, (title, pages) in PDFS.items():
        write_bytes(files / name, make_pdf(title, pages))
    for name, draw in photos().items():
        write_bytes(files / name, draw().png())
    county = county_map().png()
    # Two resources carry the same map under different names: identical bytes, one set of chunks.
    write_bytes(files / "lg0002-county-map-1935.png", county)
    write_bytes(files / "ph0005-county-map-1935.png", county)


def write_csv(out: Path, table: list[Row]) -> None:
    with (out / "collection.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in table:
            row = dict(row)
            files = row.get("files", [])
            assert isinstance(files, list)
            if files:
                row["format"] = file_formats(files)
            unknown = set(row) - set(CSV_COLUMNS)
            if unknown:
                raise ValueError(f"{row['identifier']}: unknown columns {sorted(unknown)}")
            writer.writerow([cell(row.get(col, "")) for col in CSV_COLUMNS])


def write_folder(out: Path) -> None:
    folder = out / "folders" / "oral-history-li-family"
    write_text(folder / "transcript.txt", TRANSCRIPT_LI_FAMILY)
    write_bytes(folder / "family-photo-1963.png", photo_group(Rng("li-family"), 2, 3, True).png())
    zh, en = "zh", "en"
    meta: dict[str, object] = {
        "identifier": "DHX-OH-0006",
        "title": [
            {"value": "李氏家族口述史：从民勤到敦煌", "lang": zh},
            {"value": "Li family oral history: from Minqin to Dunhuang", "lang": en},
        ],
        "creator": {"value": "李氏兄妹（化名）口述", "lang": zh},
        "contributor": {"value": "敦煌县图书馆地方文献部（访谈、整理）", "lang": zh},
        "subject": [
            {"value": "口述史", "lang": zh},
            {"value": "移民", "lang": zh},
            {"value": "Oral history", "lang": en},
            {"value": "Migration", "lang": en},
        ],
        "description": [
            {
                "value": "三兄妹讲述一九五六年全家从民勤迁居敦煌的经历，附一九六三年全家福。",
                "lang": zh,
            },
            {
                "value": "Three siblings recall their family's move from Minqin to Dunhuang "
                "in 1956; with a family portrait of 1963.",
                "lang": en,
            },
        ],
        "publisher": [{"value": LIBRARY_ZH, "lang": zh}, {"value": LIBRARY_EN, "lang": en}],
        "date": "2020-08-16",
        "type": ["Text", "StillImage"],
        "format": ["text/plain", "image/png"],
        "language": "zh",
        "coverage": [{"value": "敦煌", "lang": zh}, {"value": "Dunhuang", "lang": en}],
        "collection": "oral-history",
        "access": "open",
        "rights": RS.format("InC"),
        "license": CC_BY_NC,
    }
    write_text(folder / "metadata.json", json.dumps(meta, ensure_ascii=False, indent=2) + "\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_bag(out: Path) -> Path:
    bag = out / "bags" / "dunhuang-survey-1987"
    data = bag / "data"
    write_bytes(data / "survey-report.pdf", make_pdf(*BAG_REPORT))
    write_text(data / "field-notes.txt", FIELD_NOTES)
    write_bytes(data / "cave-facade-sketch.png", sketch_cave_facade(Rng("bag-sketch")).png())
    payload = sorted(p for p in data.rglob("*") if p.is_file())
    octets = sum(p.stat().st_size for p in payload)
    write_text(bag / "bagit.txt", "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    info = [
        ("Source-Organization", f"{LIBRARY_EN} ({LIBRARY_ZH})"),
        ("External-Identifier", "DHX-SV-1987"),
        ("External-Description", "Report, notes and sketch, 1987 manuscript survey (demo)"),
        ("Bagging-Date", BAGGING_DATE),
        ("Payload-Oxum", f"{octets}.{len(payload)}"),
        ("DC-Title", "Dunhuang Manuscripts Survey, 1987"),
        ("DC-Creator", "Dunhuang County Cultural Centre, manuscript survey team"),
        ("DC-Date", "1987"),
        ("DC-Language", "en"),
        ("DC-Type", "Text"),
        ("DC-Subject", "Dunhuang manuscripts"),
        ("DC-Coverage", "Dunhuang"),
        ("DC-Rights", RS.format("InC-EDU")),
    ]
    write_text(bag / "bag-info.txt", "".join(f"{k}: {v}\n" for k, v in info))
    manifest = "".join(f"{sha256(p)}  {p.relative_to(bag).as_posix()}\n" for p in payload)
    write_text(bag / "manifest-sha256.txt", manifest)
    tags = ["bag-info.txt", "bagit.txt", "manifest-sha256.txt"]
    write_text(bag / "tagmanifest-sha256.txt", "".join(f"{sha256(bag / t)}  {t}\n" for t in tags))
    return bag


def fix_times(out: Path) -> None:
    for root, dirs, names in os.walk(out, topdown=False):
        for name in names + dirs:
            os.utime(Path(root) / name, (FIXED_MTIME, FIXED_MTIME))
    os.utime(out, (FIXED_MTIME, FIXED_MTIME))


# --------------------------------------------------------------------------------------------
# Self-checks run after every generation.
# --------------------------------------------------------------------------------------------


def check_png(data: bytes) -> str | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "bad signature"
    pos, idat, seen = 8, bytearray(), []
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            return f"bad CRC in {kind!r}"
        seen.append(kind)
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            if (depth, ctype) != (8, 2):
                return "unexpected IHDR"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if seen[0] != b"IHDR" or seen[-1] != b"IEND":
        return "bad chunk order"
    raw = zlib.decompress(bytes(idat))
    if len(raw) != height * (1 + 3 * width):
        return "wrong image data size"
    return None


def check_pdf(data: bytes) -> str | None:
    if not data.startswith(b"%PDF-1.4\n") or not data.endswith(b"%%EOF\n"):
        return "bad header or trailer"
    start = int(data[data.rindex(b"startxref\n") + 10 :].split(b"\n")[0])
    if not data[start:].startswith(b"xref\n"):
        return "startxref does not point at xref"
    lines = data[start:].split(b"\n")
    count = int(lines[1].split()[1])
    for num in range(1, count):
        off = int(lines[2 + num][:10])
        if not data[off:].startswith(b"%d 0 obj\n" % num):
            return f"xref offset of object {num} is wrong"
    for m in re.finditer(rb"<< /Length (\d+) >>\nstream\n", data):
        end = m.end() + int(m.group(1))
        if data[end : end + 10] != b"\nendstream":
            return "stream /Length is wrong"
    return None


def check_csv(out: Path) -> list[str]:
    problems: list[str] = []
    with (out / "collection.csv").open(encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh))
    for col in table[0]:
        base = col.split("@")[0].lower()
        if base not in DC_ELEMENTS and base not in {
            "collection",
            "access",
            "embargo_until",
            "license",
            "files",
        }:
            problems.append(f"unknown column {col}")
    for r in table:
        rid = r["identifier"]
        if r["access"] not in ACCESS:
            problems.append(f"{rid}: bad access {r['access']}")
        if (r["access"] == "embargoed") != bool(r["embargo_until"]):
            problems.append(f"{rid}: embargo_until must be set iff access=embargoed")
        if not r["rights"].startswith("http://rightsstatements.org/vocab/"):
            problems.append(f"{rid}: rights is not a RightsStatements.org URI")
        for f in filter(None, r["files"].split("||")):
            if not (out / f).is_file():
                problems.append(f"{rid}: missing file {f}")
    return problems


def verify(out: Path, bag: Path) -> list[str]:
    problems = check_csv(out)
    for path in sorted(out.rglob("*")):
        checker = {".png": check_png, ".pdf": check_pdf}.get(path.suffix)
        if checker and (err := checker(path.read_bytes())):
            problems.append(f"{path.relative_to(out)}: {err}")
        if path.suffix in {".txt", ".csv", ".json"}:
            path.read_text(encoding="utf-8")
    try:
        import bagit  # optional: installed with the `bench` extra (pip install -e '.[bench]')
    except ImportError:
        print("note: the bagit package is not installed; the bag was not validated by it")
    else:
        try:
            bagit.Bag(str(bag)).validate()
        except bagit.BagError as exc:
            problems.append(f"bag: {exc}")
    return problems


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: make_sample.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "collection.csv").is_file()):
            print(
                f"refusing to wipe {out}: it exists and is not a previous sample "
                "(no collection.csv)",
                file=sys.stderr,
            )
            return 1
        shutil.rmtree(out)
    out.mkdir(parents=True)

    table = rows()
    write_files(out)
    write_csv(out, table)
    write_folder(out)
    bag = write_bag(out)
    fix_times(out)

    problems = verify(out, bag)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {len(table)} CSV rows + 1 folder + 1 bag, {total} bytes")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
