"""The coverage report as one self-contained HTML file an official can attach to a report.

Inline CSS and an inline SVG chart, no scripts, no fonts, no images from elsewhere:
the file opens the same offline, in a mail client or printed on A4. Headings are
Vietnamese first with the English beneath, as the readers are provincial officials.
"""

from datetime import datetime
from html import escape

from fleet.report import CATEGORIES, percent

__all__ = ["render_html"]

COLOURS = {"completed": "#2e7d32", "partial": "#f9a825", "missed": "#c62828", "unknown": "#9e9e9e"}
LABELS = {"completed": "Phát đủ · completed", "partial": "Phát một phần · partial",
          "missed": "Không phát · missed", "unknown": "Chưa báo cáo · not reported"}
# The headline coverage is coloured by its value, never green regardless: a report of 0%
# in green reads as good news at a glance. (lowest share, CSS class, colour), best first.
COVERAGE_BANDS = ((0.95, "good", COLOURS["completed"]), (0.80, "fair", "#e65100"), (0.0, "poor", COLOURS["missed"]))
NO_COVERAGE = ("none", COLOURS["unknown"])  # nothing targeted: no figure to judge
CHART_MAX_BARS = 60
BAR_H, BAR_GAP, LABEL_W, CHART_W = 18, 6, 230, 720

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;color:#212121;margin:24px;max-width:1000px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccc}
.en{color:#616161;font-size:.85em;font-weight:normal}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left}
.meta td{border:none;text-align:left;padding:2px 8px 2px 0}
.big{font-size:28px;font-weight:bold}
""" + "".join(f".{name}{{color:{colour}}}" for _, name, colour in COVERAGE_BANDS + ((None,) + NO_COVERAGE,)) + """
.warn{background:#fff3e0}
.legend span{display:inline-block;margin-right:16px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
@media print{body{margin:0}h2{break-after:avoid}tr{break-inside:avoid}}
"""


def coverage_class(completed: int, targeted: int) -> str:
    """The CSS class (good, fair, poor; none without targets) that colours a coverage figure."""
    if not targeted:
        return NO_COVERAGE[0]
    share = completed / targeted
    return next(name for lowest, name, _ in COVERAGE_BANDS if share >= lowest)


def _e(value) -> str:
    return escape(str(value), quote=True)


def _when(iso: str) -> str:
    return f"{datetime.fromisoformat(iso):%d/%m/%Y %H:%M}"


def _sum(rows, key: str) -> list[tuple[str, dict]]:
    """Tallies of every occurrence added up per area (district or commune)."""
    totals: dict[str, dict] = {}
    for item in rows:
        for area in item[f"{key}s"]:
            t = totals.setdefault(area[key], dict.fromkeys(("targeted",) + CATEGORIES, 0))
            for name in t:
                t[name] += area[name]
    return sorted(totals.items())


def _chart(items: list[dict]) -> str:
    shown = items[-CHART_MAX_BARS:]
    height = len(shown) * (BAR_H + BAR_GAP) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{height}" '
             f'viewBox="0 0 {CHART_W} {height}" role="img" aria-label="coverage per occurrence">']
    scale = CHART_W - LABEL_W - 60
    for row, item in enumerate(shown):
        y = row * (BAR_H + BAR_GAP)
        parts.append(f'<text x="{LABEL_W - 6}" y="{y + 13}" font-size="11" text-anchor="end" '
                     f'font-family="DejaVu Sans,Arial,sans-serif">{_e(item["item"])} · {_e(_when(item["scheduled_at"]))}'
                     f'</text>')
        x = float(LABEL_W)
        for category in CATEGORIES:
            if item["targeted"] and item[category]:
                width = scale * item[category] / item["targeted"]
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_H}" '
                             f'fill="{COLOURS[category]}"><title>{_e(LABELS[category])}: {item[category]}'
                             f'</title></rect>')
                x += width
        if not item["targeted"]:
            parts.append(f'<rect x="{LABEL_W}" y="{y}" width="{scale}" height="{BAR_H}" fill="none" '
                         f'stroke="#bbb"/>')
        parts.append(f'<text x="{LABEL_W + scale + 6}" y="{y + 13}" font-size="11" '
                     f'font-family="DejaVu Sans,Arial,sans-serif">'
                     f'{_e(percent(item["completed"], item["targeted"]))}</text>')
    axis_y = len(shown) * (BAR_H + BAR_GAP) + 4
    for pct in (0, 25, 50, 75, 100):
        x = LABEL_W + scale * pct / 100
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{axis_y}" stroke="#000" '
                     f'stroke-opacity="0.12"/><text x="{x:.1f}" y="{axis_y + 14}" font-size="10" '
                     f'text-anchor="middle" font-family="DejaVu Sans,Arial,sans-serif">{pct}%</text>')
    parts.append("</svg>")
    note = (f"<p class='en'>Biểu đồ chỉ hiện {len(shown)} lần phát gần nhất trên {len(items)} · "
            f"the chart shows the last {len(shown)} of {len(items)} occurrences.</p>"
            if len(shown) < len(items) else "")
    return "".join(parts) + note


def _legend() -> str:
    return "<p class='legend'>" + "".join(
        f"<span><i style='background:{COLOURS[c]}'></i>{_e(LABELS[c])}</span>" for c in CATEGORIES) + "</p>"


def _count_cells(t: dict) -> str:
    return "".join(f"<td>{t[name]}</td>" for name in ("targeted",) + CATEGORIES) + \
        f"<td class={coverage_class(t['completed'], t['targeted'])}>{_e(percent(t['completed'], t['targeted']))}</td>"


COUNT_HEADERS = ("<th>Số cụm loa<br><span class=en>targeted</span></th>"
                 "<th>Phát đủ<br><span class=en>completed</span></th>"
                 "<th>Một phần<br><span class=en>partial</span></th>"
                 "<th>Không phát<br><span class=en>missed</span></th>"
                 "<th>Chưa báo cáo<br><span class=en>not reported</span></th>"
                 "<th>Tỉ lệ<br><span class=en>coverage</span></th>")


def _occurrence_table(report: dict) -> str:
    rows = []
    for item in report["items"]:
        warn = " class='warn'" if item["completed"] < item["targeted"] else ""
        rows.append(f"<tr{warn}><td class=l>{_e(item['item'])}</td>"
                    f"<td class=l>{_e(report['titles'].get(item['item'], ''))}</td>"
                    f"<td class=l>{_e(_when(item['scheduled_at']))}</td>{_count_cells(item)}</tr>")
    if not rows:
        rows.append("<tr><td class=l colspan=9>Không có lần phát nào trong khoảng thời gian này · "
                    "no occurrences in this period</td></tr>")
    return ("<table><tr><th class=l>Mục<br><span class=en>item</span></th>"
            "<th class=l>Nội dung<br><span class=en>content</span></th>"
            "<th class=l>Thời gian<br><span class=en>scheduled</span></th>" + COUNT_HEADERS + "</tr>"
            + "".join(rows) + "</table>")


def _area_table(report: dict, key: str, heading: str) -> str:
    rows = []
    for name, t in _sum(report["items"], key):
        warn = " class='warn'" if t["completed"] < t["targeted"] else ""
        rows.append(f"<tr{warn}><td class=l>{_e(name)}</td>{_count_cells(t)}</tr>")
    return (f"<table><tr><th class=l>{heading}</th>" + COUNT_HEADERS + "</tr>" + "".join(rows) + "</table>"
            "<p class=en>Cộng dồn mọi lần phát · summed over every occurrence (units × plays).</p>")


def _vehicle_table(report: dict) -> str:
    """Area items (SPEC "Mobile units"): per area, day and vehicle; none on a schedule without areas."""
    rows = report.get("areas") or []
    if not rows:
        return ""
    body = "".join(
        f"<tr><td class=l>{_e(r['area'])}</td><td class=l>{_e(r['day'])}</td><td class=l>{_e(r['unit'])}</td>"
        f"<td>{r['plays']}</td><td>{r['completed']}</td><td>{r['audio_inside_s'] / 60:.1f}</td>"
        f"<td>{r['played_s'] / 60:.1f}</td><td>{r['time_inside_s'] / 60:.1f}</td>"
        f"<td class=l>{_e(', '.join(f'{n} {why}' for why, n in sorted(r['missed'].items())))}</td></tr>"
        for r in rows)
    return ("<h2>Xe thông tin lưu động theo khu vực <span class=en>vehicles by area</span></h2>"
            "<table><tr><th class=l>Khu vực<br><span class=en>area</span></th>"
            "<th class=l>Ngày<br><span class=en>day</span></th><th class=l>Xe<br><span class=en>vehicle</span></th>"
            "<th>Lượt phát<br><span class=en>plays</span></th><th>Đủ<br><span class=en>completed</span></th>"
            "<th>Phút nghe trong khu vực<br><span class=en>audio min inside</span></th>"
            "<th>Phút đã phát<br><span class=en>audio min</span></th>"
            "<th>Phút trong khu vực<br><span class=en>min inside</span></th>"
            "<th class=l>Không phát<br><span class=en>missed</span></th></tr>" + body + "</table>")


def render_html(report: dict) -> str:
    t = report["totals"]
    units = max((item["targeted"] for item in report["items"]), default=0)
    return f"""<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8">
<title>Báo cáo phát thanh {_e(report['schedule'])}</title>
<style>{CSS}</style></head><body>
<h1>Báo cáo kết quả phát thanh cơ sở<br><span class=en>Commune loudspeaker coverage report</span></h1>
<table class=meta>
<tr><td>Lịch phát · schedule</td><td><b>{_e(report['schedule'])}</b> (phiên bản · version {_e(report['version'])})</td></tr>
<tr><td>Phạm vi · targets</td><td>{_e(', '.join(report['targets']))}</td></tr>
<tr><td>Thời gian · period</td><td>{_e(_when(report['from']))} – {_e(_when(report['to']))} ({_e(report['timezone'])})</td></tr>
<tr><td>Lập lúc · generated</td><td>{_e(_when(report['generated_at']))}</td></tr>
</table>
<h2>Tổng hợp <span class=en>summary</span></h2>
<p><span class="big {coverage_class(t['completed'], t['targeted'])}">{_e(percent(t['completed'], t['targeted']))}</span>
 lượt phát đủ · of plays completed: {t['completed']} / {t['targeted']}
 ({len(report['items'])} lần phát × tối đa {units} cụm loa · occurrences × up to {units} units).
 Một phần · partial {t['partial']}, không phát · missed {t['missed']}, chưa báo cáo · not reported {t['unknown']}.</p>
{_legend()}
{_chart(report['items']) if report['items'] else ''}
<h2>Từng lần phát <span class=en>per occurrence</span></h2>
{_occurrence_table(report)}
<h2>Theo huyện <span class=en>by district</span></h2>
{_area_table(report, 'district', 'Huyện<br><span class=en>district</span>')}
<h2>Theo xã <span class=en>by commune</span></h2>
{_area_table(report, 'commune', 'Xã<br><span class=en>commune</span>')}
{_vehicle_table(report)}
<p class=en>Kết quả tốt nhất của mỗi cụm loa cho mỗi lần phát được tính · each unit's best outcome per
occurrence counts: completed &gt; partial (interrupted with audio) &gt; missed (failed, missed); units whose
proof of play has not reached the province are "not reported". Generated by loaxa.</p>
</body></html>
"""
