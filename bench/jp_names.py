"""Japanese names with a realistic frequency distribution, for index benchmarks at 1,000,000 rows.

Real surname frequencies are steeply skewed with a long tail: 佐藤 about 1.5 % of the
population, the top 10 about 10 %, the top 100 about a third, then tens of thousands of rare
names.  Given names are much flatter (the commonest well under 1 %).  A uniform draw from a few
dozen names (what the synthetic hospital uses) gives every query ~20,000 hits in a million rows
and no rare names at all, so it says nothing about a real registry.

Here:

- **surnames**: the 44 commonest real ones of :mod:`fhir_gateway.synth.content` in rank order,
  then ~2,800 two-element compounds (山 + 田 = 山田 ヤマダ, 石 + 川 = 石川 イシカワ, with a
  voiced second reading for some, as 川 → ガワ), shuffled with a fixed seed;
- **given names**: the real ones of the synthetic hospital first, then compounds of a first
  and a last element (浩 + 之 = 浩之 ヒロユキ; 美 + 子 = 美子 ミコ), ~1,500 per sex;
- **weights**: Zipf–Mandelbrot, weight(rank) = (rank + q) ** -s, fitted to the real surname
  figures above: q = 4, s = 0.8 (rank 1 = 1.55 %, top 10 = 10.0 %, top 100 = 33.3 % of rows);
  given names q = 40, s = 1 (rank 1 ≈ 0.7 %, top 100 ≈ 35 %).  ``python bench/jp_names.py``
  prints the figures.

The names are plausible, not a census; what matters for the index is the distribution of kana
grams, which follows from the kana elements and these weights.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from bisect import bisect
from functools import lru_cache

from fhir_gateway.synth import content as C

SURNAME_FIRST = [
    ("山", "ヤマ"), ("田", "タ"), ("中", "ナカ"), ("小", "コ"), ("大", "オオ"), ("高", "タカ"),
    ("石", "イシ"), ("松", "マツ"), ("井", "イ"), ("木", "キ"), ("村", "ムラ"), ("川", "カワ"),
    ("藤", "フジ"), ("岡", "オカ"), ("森", "モリ"), ("池", "イケ"), ("原", "ハラ"), ("野", "ノ"),
    ("西", "ニシ"), ("東", "ヒガシ"), ("北", "キタ"), ("南", "ミナミ"), ("上", "ウエ"),
    ("下", "シモ"), ("前", "マエ"), ("長", "ナガ"), ("清", "キヨ"), ("福", "フク"), ("吉", "ヨシ"),
    ("今", "イマ"), ("宮", "ミヤ"), ("内", "ウチ"), ("島", "シマ"), ("浜", "ハマ"), ("竹", "タケ"),
    ("杉", "スギ"), ("桜", "サクラ"), ("菊", "キク"), ("金", "カネ"), ("安", "ヤス"), ("平", "ヒラ"),
    ("千", "チ"), ("新", "ニイ"), ("古", "フル"), ("白", "シラ"), ("黒", "クロ"), ("赤", "アカ"),
    ("青", "アオ"), ("坂", "サカ"), ("江", "エ"), ("谷", "タニ"), ("沢", "サワ"), ("岩", "イワ"),
    ("橋", "ハシ"), ("浅", "アサ"), ("深", "フカ"), ("広", "ヒロ"), ("永", "ナガ"), ("久", "ヒサ"),
    ("武", "タケ"), ("秋", "アキ"), ("春", "ハル"), ("菅", "スガ"), ("柴", "シバ"), ("梅", "ウメ"),
    ("桑", "クワ"), ("星", "ホシ"), ("堀", "ホリ"), ("根", "ネ"), ("関", "セキ"), ("横", "ヨコ"),
    ("三", "ミ"), ("丸", "マル"), ("早", "ハヤ"), ("宇", "ウ"),
]
# (kanji, reading, voiced reading): the voiced one is used for about half of the compounds
SURNAME_LAST = [
    ("田", "タ", "ダ"), ("川", "カワ", "ガワ"), ("山", "ヤマ", "ヤマ"), ("本", "モト", "モト"),
    ("村", "ムラ", "ムラ"), ("野", "ノ", "ノ"), ("井", "イ", "イ"), ("木", "キ", "ギ"),
    ("島", "シマ", "ジマ"), ("沢", "サワ", "ザワ"), ("原", "ハラ", "バラ"), ("口", "クチ", "グチ"),
    ("崎", "サキ", "ザキ"), ("藤", "トウ", "ドウ"), ("部", "ベ", "ベ"), ("谷", "タニ", "ヤ"),
    ("内", "ウチ", "ウチ"), ("橋", "ハシ", "バシ"), ("岡", "オカ", "オカ"), ("林", "ハヤシ", "バヤシ"),
    ("森", "モリ", "モリ"), ("浦", "ウラ", "ウラ"), ("瀬", "セ", "ゼ"), ("池", "イケ", "イケ"),
    ("宮", "ミヤ", "ミヤ"), ("尾", "オ", "オ"), ("倉", "クラ", "グラ"), ("塚", "ツカ", "ヅカ"),
    ("屋", "ヤ", "ヤ"), ("江", "エ", "エ"), ("坂", "サカ", "ザカ"), ("上", "カミ", "ガミ"),
    ("下", "シタ", "シタ"), ("城", "シロ", "ジロ"), ("松", "マツ", "マツ"), ("場", "バ", "バ"),
    ("石", "イシ", "イシ"), ("戸", "ト", "ド"),
]
MALE_FIRST = [
    ("浩", "ヒロ"), ("隆", "タカ"), ("和", "カズ"), ("正", "マサ"), ("健", "ケン"), ("秀", "ヒデ"),
    ("英", "ヒデ"), ("俊", "トシ"), ("義", "ヨシ"), ("信", "ノブ"), ("幸", "ユキ"), ("明", "アキ"),
    ("光", "ミツ"), ("康", "ヤス"), ("博", "ヒロ"), ("昭", "アキ"), ("武", "タケ"), ("勝", "カツ"),
    ("清", "キヨ"), ("哲", "テツ"), ("達", "タツ"), ("直", "ナオ"), ("克", "カツ"), ("真", "シン"),
    ("一", "カズ"), ("修", "シュウ"), ("拓", "タク"), ("誠", "セイ"), ("翔", "ショウ"), ("悠", "ユウ"),
    ("陽", "ハル"), ("大", "ダイ"), ("亮", "リョウ"), ("良", "リョウ"), ("智", "トモ"), ("友", "トモ"),
    ("孝", "タカ"), ("則", "ノリ"), ("茂", "シゲ"), ("貴", "タカ"), ("恭", "キョウ"), ("圭", "ケイ"),
    ("晃", "コウ"), ("耕", "コウ"), ("純", "ジュン"), ("文", "フミ"), ("裕", "ユウ"), ("将", "マサ"),
    ("宏", "ヒロ"), ("敏", "トシ"), ("泰", "ヤス"), ("忠", "タダ"), ("久", "ヒサ"), ("善", "ヨシ"),
]
MALE_LAST = [
    ("夫", "オ"), ("男", "オ"), ("雄", "オ"), ("之", "ユキ"), ("幸", "ユキ"), ("志", "シ"), ("史", "シ"),
    ("司", "ジ"), ("也", "ヤ"), ("哉", "ヤ"), ("樹", "キ"), ("輝", "キ"), ("彦", "ヒコ"), ("人", "ト"),
    ("斗", "ト"), ("太", "タ"), ("介", "スケ"), ("輔", "スケ"), ("平", "ヘイ"), ("郎", "ロウ"),
    ("一", "イチ"), ("治", "ジ"), ("明", "アキ"), ("典", "ノリ"), ("紀", "ノリ"), ("和", "カズ"),
    ("弘", "ヒロ"), ("広", "ヒロ"), ("成", "ナリ"),
]
FEMALE_FIRST = [
    ("美", "ミ"), ("由", "ユ"), ("恵", "ケイ"), ("幸", "サチ"), ("和", "カズ"), ("洋", "ヨウ"),
    ("陽", "ヨウ"), ("久", "ク"), ("智", "トモ"), ("直", "ナオ"), ("真", "マ"), ("裕", "ユウ"),
    ("明", "アケ"), ("千", "チ"), ("早", "サ"), ("紗", "サ"), ("亜", "ア"), ("愛", "ア"), ("絵", "エ"),
    ("香", "カ"), ("佳", "ヨシ"), ("純", "ジュン"), ("静", "シズ"), ("節", "セツ"), ("典", "ノリ"),
    ("弘", "ヒロ"), ("文", "フミ"), ("房", "フサ"), ("雅", "マサ"), ("麻", "マ"), ("万", "マ"),
    ("結", "ユ"), ("夕", "ユウ"), ("優", "ユウ"), ("理", "リ"), ("里", "リ"), ("礼", "レイ"),
    ("玲", "レイ"), ("若", "ワカ"), ("菜", "ナ"), ("奈", "ナ"), ("春", "ハル"), ("秋", "アキ"),
    ("冬", "フユ"), ("夏", "ナツ"), ("咲", "サキ"), ("君", "キミ"), ("芳", "ヨシ"), ("敏", "トシ"),
]
FEMALE_LAST = [
    ("子", "コ"), ("美", "ミ"), ("恵", "エ"), ("江", "エ"), ("代", "ヨ"), ("世", "ヨ"), ("香", "カ"),
    ("花", "カ"), ("佳", "カ"), ("奈", "ナ"), ("菜", "ナ"), ("乃", "ノ"), ("里", "リ"), ("理", "リ"),
    ("枝", "エ"), ("穂", "ホ"), ("帆", "ホ"), ("衣", "イ"), ("希", "キ"), ("紀", "キ"), ("音", "ネ"),
    ("実", "ミ"),
]


def _voiced(*parts: str) -> bool:
    return hashlib.sha256("".join(parts).encode()).digest()[0] & 1 == 1


def _ranked(head, compounds, seed: int) -> list[tuple[str, str]]:
    """The real names first (their rank order), then the compounds shuffled; no kanji twice."""
    tail = sorted(compounds)
    random.Random(seed).shuffle(tail)
    out, seen = [], set()
    for kanji, kana in itertools.chain(head, tail):
        if kanji not in seen and kana:
            seen.add(kanji)
            out.append((kanji, kana))
    return out


@lru_cache(maxsize=None)
def surnames() -> list[tuple[str, str]]:
    comp = []
    for (k1, r1), (k2, r2, v2) in itertools.product(SURNAME_FIRST, SURNAME_LAST):
        if k1 != k2:
            comp.append((k1 + k2, r1 + (v2 if _voiced(k1, k2) else r2)))
    return _ranked(C.SURNAMES, comp, 1)


@lru_cache(maxsize=None)
def given_names(sex: str) -> list[tuple[str, str]]:
    first, last, head = ((MALE_FIRST, MALE_LAST, C.MALE_NAMES) if sex == "M"
                         else (FEMALE_FIRST, FEMALE_LAST, C.FEMALE_NAMES))
    comp = [(k1 + k2, r1 + r2) for (k1, r1), (k2, r2) in itertools.product(first, last)
            if k1 != k2 and r1 != r2]
    return _ranked(head, comp, 2 if sex == "M" else 3)


def _cumulative(n: int, q: float, s: float = 1.0) -> list[float]:
    acc, out = 0.0, []
    for r in range(1, n + 1):
        acc += (r + q) ** -s
        out.append(acc)
    return out


class NameDrawer:
    """Draws (kanji family, kana family, kanji given, kana given) by the weights above."""

    SURNAME_Q, SURNAME_S, GIVEN_Q = 4.0, 0.8, 40.0

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fam = surnames()
        self.fam_cum = _cumulative(len(self.fam), self.SURNAME_Q, self.SURNAME_S)
        self.giv = {s: given_names(s) for s in "MF"}
        self.giv_cum = {s: _cumulative(len(v), self.GIVEN_Q) for s, v in self.giv.items()}

    @staticmethod
    def _pick(rng: random.Random, names: list, cum: list[float]):
        return names[min(bisect(cum, rng.random() * cum[-1]), len(names) - 1)]

    def draw(self, sex: str) -> tuple[str, str, str, str]:
        fam, kfam = self._pick(self.rng, self.fam, self.fam_cum)
        giv, kgiv = self._pick(self.rng, self.giv[sex], self.giv_cum[sex])
        return fam, kfam, giv, kgiv


def shares() -> dict:
    """The distribution's figures (for the docs): names, and the share of rows of the top names."""
    out: dict = {}
    d = NameDrawer
    for label, names, q, s in (("surnames", surnames(), d.SURNAME_Q, d.SURNAME_S),
                               ("male given names", given_names("M"), d.GIVEN_Q, 1.0),
                               ("female given names", given_names("F"), d.GIVEN_Q, 1.0)):
        cum = _cumulative(len(names), q, s)
        out[label] = {"distinct": len(names), "distinct_kana": len({k for _, k in names}),
                      "top1_pct": round(100 * cum[0] / cum[-1], 2),
                      "top10_pct": round(100 * cum[9] / cum[-1], 1),
                      "top100_pct": round(100 * cum[99] / cum[-1], 1)}
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(shares(), ensure_ascii=False, indent=1))
