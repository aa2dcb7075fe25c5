"""The drill report as one self-contained HTML page (inline CSS, no scripts, no CDN).

Japanese first, English as the second label, for a hospital manager who must decide what to fix.
"""

from __future__ import annotations

from collections import defaultdict

from jinja2 import Environment

from .kinds import label

PER_KIND = 200  # problems shown per kind; the JSON report has all of them
MONTHS = 12  # month columns in the count table (the most recent ones)

TEMPLATE = r"""<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>災害訓練レポート / Drill report — {{ r.generated }}</title>
<style>
body{font-family:"Hiragino Sans","Noto Sans CJK JP","Yu Gothic",sans-serif;margin:1.5rem;color:#222;line-height:1.5}
h1{font-size:1.5rem} h2{font-size:1.25rem;border-bottom:2px solid #ccc;margin-top:2rem} h3{font-size:1.05rem}
.en{color:#666;font-size:.85em;font-weight:normal}
.verdict{display:inline-block;padding:.3rem 1rem;border-radius:.3rem;font-size:1.3rem;font-weight:bold;color:#fff}
.ok{background:#2e7d32} .ng{background:#c62828}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem} th,td{border:1px solid #bbb;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.n{text-align:right;font-variant-numeric:tabular-nums}
.error{color:#b71c1c;font-weight:bold} .warning{color:#e65100}
code{font-size:.85em;word-break:break-all} .stale{background:#fff3e0} .muted{color:#777}
details{margin:.3rem 0} summary{cursor:pointer}
@media print{details{display:block} summary{display:none}}
</style></head><body>
<h1>SS-MIX2 バックアップ点検レポート <span class="en">Backup drill report</span></h1>
<p><span class="verdict {{ 'ok' if r.healthy else 'ng' }}">{{ r.verdict }}</span>
 <span class="en">{{ 'healthy' if r.healthy else 'action required' }}</span></p>
<table>
<tr><th>作成日時 <span class="en">generated</span></th><td>{{ r.generated }}</td></tr>
<tr><th>ツール <span class="en">tool</span></th><td>{{ r.tool }} {{ r.version }} ({{ r.host }})</td></tr>
{% if r.options.since %}<tr><th>点検対象 <span class="en">files checked since</span></th><td>{{ r.options.since }}</td></tr>{% endif %}
</table>
{% for f in r.facilities %}
<h2>{{ f.name }} ({{ f.code }}) <span class="verdict {{ 'ok' if f.healthy else 'ng' }}">{{ f.verdict }}</span></h2>
<h3>概要 <span class="en">Summary</span></h3>
<table>
<tr><th>患者数 <span class="en">patients</span></th><td class="n">{{ f.patients }}</td>
<th>ファイル数 <span class="en">files</span></th><td class="n">{{ f.files }} ({{ f.files_checked }} 点検 <span class="en">checked</span>)</td></tr>
<tr><th>エラー <span class="en">errors</span></th><td class="n error">{{ f.summary.errors }}</td>
<th>警告 <span class="en">warnings</span></th><td class="n warning">{{ f.summary.warnings }}</td></tr>
<tr><th>ストレージ <span class="en">storage</span></th><td colspan="3">{% for s in f.storage %}<code>{{ s }}</code>{% if loop.first %} (主 <span class="en">primary</span>){% endif %}<br>{% endfor %}</td></tr>
<tr><th>所要時間 <span class="en">duration</span></th><td colspan="3">{{ f.seconds }} 秒 <span class="en">s</span></td></tr>
</table>
{% if f.summary.by_kind %}<table><tr><th>問題の種類 <span class="en">kind</span></th><th>件数 <span class="en">count</span></th></tr>
{% for k, n in f.summary.by_kind.items() %}<tr><td>{{ lab(k)[0] }} <span class="en">{{ lab(k)[1] }} ({{ k }})</span></td><td class="n">{{ n }}</td></tr>{% endfor %}</table>{% endif %}
{% if f.unmapped_content %}<h3>FHIRに変換されない内容 <span class="en">Unmapped content per data type and field</span></h3>
<table><tr><th>データ種別 <span class="en">data type</span></th><th>項目 <span class="en">field</span></th><th>件数 <span class="en">count</span></th></tr>
{% for t, fields in f.unmapped_content.items() %}{% for fld, n in fields.items() %}<tr><td>{{ t }} {{ ja(t) }}</td><td><code>{{ fld }}</code></td><td class="n">{{ n }}</td></tr>{% endfor %}{% endfor %}</table>{% endif %}

<h3>データ種別・月別件数 <span class="en">Files per data type and month</span></h3>
{% set months = months_of(f) %}
<table><tr><th>データ種別 <span class="en">data type</span></th><th>合計 <span class="en">total</span></th>
{% if months.hidden %}<th class="muted">…{{ months.hidden }}か月前まで <span class="en">earlier</span></th>{% endif %}
{% for m in months.shown %}<th>{{ m }}</th>{% endfor %}</tr>
{% for t, c in f.counts.items() %}<tr><td>{{ t }} {{ ja(t) }}</td><td class="n">{{ c.total }}</td>
{% if months.hidden %}<td class="n muted">{{ earlier(c, months.shown) }}</td>{% endif %}
{% for m in months.shown %}<td class="n">{{ c.months.get(m, '') }}</td>{% endfor %}</tr>{% endfor %}
</table>

<h3>鮮度 <span class="en">Freshness (newest file per data type)</span></h3>
<table><tr><th>データ種別 <span class="en">data type</span></th><th>最新の発生日時 <span class="en">newest</span></th>
<th>全体の最新からの日数 <span class="en">days behind newest</span></th><th>平均間隔(日) <span class="en">mean interval</span></th><th>件数 <span class="en">files</span></th></tr>
{% for row in f.freshness %}<tr class="{{ 'stale' if row.stale }}"><td>{{ row.data_type }} {{ row.name_ja }}</td><td>{{ fmt_ts(row.newest) }}</td>
<td class="n">{{ row.age_days }}{% if row.stale %} ⚠ 更新停止の疑い <span class="en">stopped?</span>{% endif %}</td><td class="n">{{ row.mean_interval_days if row.mean_interval_days is not none else '' }}</td><td class="n">{{ row.files }}</td></tr>{% endfor %}
</table>

<h3>問題一覧 <span class="en">Problems by kind</span></h3>
{% set groups = group(f.problems) %}
{% if not groups %}<p>問題は見つかりませんでした。 <span class="en">No problems found.</span></p>{% endif %}
{% for k, items in groups %}
<details {{ 'open' if loop.index <= 3 }}><summary><b>{{ lab(k)[0] }}</b> <span class="en">{{ lab(k)[1] }}</span> — {{ items|length }} 件</summary>
<table><tr><th>重要度 <span class="en">severity</span></th><th>パス <span class="en">path</span></th><th>理由 <span class="en">reason</span></th></tr>
{% for p in items[:per_kind] %}<tr><td class="{{ p.severity }}">{{ 'エラー' if p.severity == 'error' else '警告' }}</td><td><code>{{ p.path }}</code></td><td>{{ p.reason }}</td></tr>{% endfor %}
{% if items|length > per_kind %}<tr><td colspan="3" class="muted">ほか {{ items|length - per_kind }} 件は JSON レポートを参照 <span class="en">more in the JSON report</span></td></tr>{% endif %}
</table></details>
{% endfor %}

{% if f.replicas %}<h3>複製の比較 <span class="en">Replica comparison</span></h3>
<p class="muted">SHA-256 計算 {{ f.replicas.hashed_files }} 件、キャッシュ利用 {{ f.replicas.cache_hits }} 件 <span class="en">hashed / cache hits</span></p>
<table><tr><th>複製 <span class="en">mirror</span></th><th>主のみ <span class="en">only primary</span></th><th>複製のみ <span class="en">only mirror</span></th><th>内容相違 <span class="en">differ</span></th><th>一致 <span class="en">same</span></th><th>遅れ(日) <span class="en">lag days</span></th></tr>
{% for p in f.replicas.pairs %}<tr><td><code>{{ p.mirror }}</code></td><td class="n">{{ p.counts.only_primary }}</td><td class="n">{{ p.counts.only_mirror }}</td><td class="n">{{ p.counts.differ }}</td><td class="n">{{ p.counts.same }}</td><td class="n">{{ p.lag_days if p.lag_days is not none else '' }}</td></tr>{% endfor %}
</table>{% endif %}

{% if f.receipts %}<h3>レセプト <span class="en">Receipts</span></h3>
<table><tr><th>ファイル <span class="en">files</span></th><td class="n">{{ f.receipts.files }}</td><th>レセプト <span class="en">receipts</span></th><td class="n">{{ f.receipts.receipts }}</td>
<th>患者紐付け <span class="en">linked</span></th><td class="n">{{ f.receipts.linked }}</td><th>未紐付け <span class="en">unlinked</span></th><td class="n">{{ f.receipts.receipts - f.receipts.linked }}</td></tr></table>{% endif %}

{% if f.diff %}<h3>前回からの変化 <span class="en">Changes since the previous drill</span> ({{ f.diff.previous_generated }})</h3>
<table>{% for cat, ja_, en in diff_cats %}<tr><th>{{ ja_ }} <span class="en">{{ en }}</span></th><td class="n">{{ f.diff.counts[cat] }}</td>
<td>{% for p in f.diff.paths[cat][:20] %}<code>{{ p }}</code><br>{% endfor %}{% if f.diff.counts[cat] > 20 %}<span class="muted">…</span>{% endif %}</td></tr>{% endfor %}</table>
{% if f.diff.data_types %}<table><tr><th>データ種別</th><th>前回 <span class="en">previous</span></th><th>今回 <span class="en">now</span></th></tr>
{% for t, d in f.diff.data_types.items() %}<tr class="{{ 'stale' if d.drop }}"><td>{{ t }}</td><td class="n">{{ d.previous }}</td><td class="n">{{ d.now }}{% if d.drop %} ⚠ 20%超の減少 <span class="en">drop &gt; 20%</span>{% endif %}</td></tr>{% endfor %}</table>{% endif %}
{% endif %}
{% endfor %}
</body></html>
"""

DIFF_CATS = [("appeared", "新規", "appeared"), ("disappeared", "消失", "disappeared"),
             ("changed", "内容変更", "changed in place"), ("newly_failing", "新たに失敗", "newly failing"),
             ("fixed", "修正済み", "fixed")]


def _group(problems: list[dict]) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in problems:
        groups[p["kind"]].append(p)
    # errors first, then by size
    return sorted(groups.items(), key=lambda kv: (not any(p["severity"] == "error" for p in kv[1]),
                                                  -len(kv[1]), kv[0]))


def _months_of(f: dict) -> dict:
    months = sorted({m for c in f.get("counts", {}).values() for m in c["months"]})
    return {"shown": months[-MONTHS:], "hidden": max(0, len(months) - MONTHS)}


def _earlier(c: dict, shown: list[str]) -> int:
    return sum(n for m, n in c["months"].items() if m not in shown)


def _ja(dtype: str) -> str:
    from storage.names import DATA_TYPES

    dt = DATA_TYPES.get(dtype)
    return dt.name_ja if dt else ""


def _fmt_ts(ts: str) -> str:
    if len(ts) >= 12:
        return f"{ts[0:4]}-{ts[4:6]}-{ts[6:8]} {ts[8:10]}:{ts[10:12]}"
    return ts


_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_template = _env.from_string(TEMPLATE)


def render(report: dict) -> str:
    return _template.render(r=report, lab=label, group=_group, per_kind=PER_KIND, ja=_ja,
                            months_of=_months_of, earlier=_earlier, fmt_ts=_fmt_ts,
                            diff_cats=DIFF_CATS)
