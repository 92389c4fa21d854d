"""A keyboard-usability check of one page, by hand in the browser (issue 15), plus axe-core
when its bundled copy is installed (axe-playwright-python ships axe.min.js).

`keyboard_problems(page)` Tabs from the top of the page and returns what is wrong:
- every interactive element (links, buttons, inputs, selects, textareas, summaries, anything
  with tabindex >= 0) is reached by Tab, in document order, and Shift+Tab walks back;
- each has an accessible name (chromium's own computation, over the DevTools protocol);
- focus is visible: the focused element's computed outline or box-shadow differs from its
  unfocused one, an outline has 3:1 contrast with the background around it, and the
  element is on screen;
- no keyboard trap: Tab always moves on, and leaves the page after the last element;
- the first stop is a skip link to the page's main content, and Enter on it moves there.
Submitting forms with Enter depends on the page: the tests press it themselves.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

# a focus indicator's contrast with what is around it (WCAG 2.2, 1.4.11 and 2.4.13)
FOCUS_CONTRAST = 3.0

# Tab stops one date or time input may have (chromium: one per part, day to AM/PM)
MULTI_FIELD_STOPS = 10

# Marks each interactive element with data-kb (its index in document order) and returns
# what it looks like unfocused. A radio group is one Tab stop (its checked or first radio).
_COLLECT = """() => {
  const sel = 'a[href], area[href], button, input:not([type=hidden]), select, textarea,'
            + ' summary, iframe, [tabindex], [contenteditable=""], [contenteditable="true"]';
  const MULTI = ['date', 'datetime-local', 'time', 'month', 'week'];
  const seenRadio = new Set();
  const out = [];
  for (const el of document.querySelectorAll(sel)) {
    el.removeAttribute('data-kb');
    if (el.disabled || el.closest('[inert]')) continue;
    if (el.hasAttribute('tabindex') && el.tabIndex < 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
    if (el.type === 'radio' && el.name) {
      if (seenRadio.has(el.name)) continue;
      const group = [...document.getElementsByName(el.name)].filter(r => r.form === el.form);
      const stop = group.find(r => r.checked) || group[0];
      seenRadio.add(el.name);
      if (stop !== el) { continue; }
    }
    el.dataset.kb = String(out.length);
    out.push({
      what: el.outerHTML.replace(/\\s+/g, ' ').slice(0, 120),
      ring: [style.outlineStyle, style.outlineWidth, style.outlineColor, style.boxShadow].join(' '),
      tabindex: el.tabIndex,
      multi: el.tagName === 'INPUT' && MULTI.includes(el.type),
    });
  }
  return out;
}"""

_FOCUSED = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  // the outline against what it is drawn on (the nearest opaque background around the
  // element): WCAG 1.4.11 asks 3:1 of a focus indicator; null when there is no outline
  const outlineContrast = (el, style) => {
    if (style.outlineStyle === 'none' || parseFloat(style.outlineWidth) === 0) return null;
    let bg = [255, 255, 255];
    for (let p = el.parentElement; p; p = p.parentElement) {
      const c = rgb(getComputedStyle(p).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) { bg = c.slice(0, 3); break; }
    }
    const [a, b] = [lum(rgb(style.outlineColor).slice(0, 3)), lum(bg)];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  };
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const style = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  return {
    kb: el.dataset.kb === undefined ? null : Number(el.dataset.kb),
    what: el.outerHTML.replace(/\\s+/g, ' ').slice(0, 120),
    ring: [style.outlineStyle, style.outlineWidth, style.outlineColor, style.boxShadow].join(' '),
    onScreen: r.right > 0 && r.bottom > 0 && r.left < innerWidth && r.top < innerHeight
              && r.width > 0 && r.height > 0,
    contrast: outlineContrast(el, style),
  };
}"""

# the sequential-navigation starting point at the very top (an autofocus field would
# otherwise start the walk in the middle): focus <html>, which Tab itself never reaches
_TO_TOP = "() => { const h = document.documentElement; h.tabIndex = -1; h.focus(); }"
_UNTOP = "() => document.documentElement.removeAttribute('tabindex')"

_SKIP_TARGET = """(kb) => {
  const link = document.querySelector(`[data-kb="${kb}"]`);
  if (!link || link.tagName !== 'A') return {problem: 'the first Tab stop is not a link'};
  const href = link.getAttribute('href') || '';
  if (!href.startsWith('#') || href.length < 2) return {problem: `it points to ${href}`};
  const target = document.getElementById(decodeURIComponent(href.slice(1)));
  const main = document.querySelector('main, [role=main]');
  if (!target) return {problem: `nothing has the id ${href}`};
  if (!main || !(target === main || main.contains(target) || target.contains(main)))
    return {problem: `${href} is not the main content`};
  const first = main.querySelector('[data-kb]');
  return {problem: null, firstInMain: first ? Number(first.dataset.kb) : null};
}"""

_IN_TARGET = """(href) => {
  const target = document.getElementById(decodeURIComponent(href.slice(1)));
  return !!target && (document.activeElement === target || target.contains(document.activeElement));
}"""


async def _name(page: Page, cdp: Any) -> tuple[str, str]:
    """(role, accessible name) of the focused element, as chromium computes them."""
    found = await cdp.send("Runtime.evaluate", {"expression": "document.activeElement"})
    tree = await cdp.send(
        "Accessibility.getPartialAXTree",
        {"objectId": found["result"]["objectId"], "fetchRelatives": False},
    )
    node = next((n for n in tree["nodes"] if not n.get("ignored")), tree["nodes"][0])
    role = str(node.get("role", {}).get("value", ""))
    name = str(node.get("name", {}).get("value", "")).strip()
    return role, name


async def _looks(
    page: Page, cdp: Any, element: dict[str, Any], focused: dict[str, Any]
) -> list[str]:
    """What is wrong with the focused element: no name, no visible focus, off screen."""
    problems = []
    role, name = await _name(page, cdp)
    if not name:
        problems.append(f"no accessible name ({role}): {element['what']}")
    if focused["ring"] == element["ring"]:
        problems.append(f"focus not visible (outline, box-shadow): {element['what']}")
    if not focused["onScreen"]:
        problems.append(f"focused element is off screen: {element['what']}")
    if focused["contrast"] is not None and focused["contrast"] < FOCUS_CONTRAST:
        problems.append(
            f"focus outline contrast {focused['contrast']:.2f}:1 against its background"
            f" (WCAG 1.4.11 asks {FOCUS_CONTRAST}:1): {element['what']}"
        )
    return problems


async def keyboard_problems(page: Page) -> list[str]:
    problems: list[str] = []
    await page.evaluate(_TO_TOP)  # nothing focused (an autofocus field would be) while
    elements: list[dict[str, Any]] = await page.evaluate(_COLLECT)  # unfocused looks are read
    if not elements:
        return ["nothing on the page can take keyboard focus"]
    problems += [
        f"tabindex {e['tabindex']} changes the Tab order: {e['what']}"
        for e in elements
        if e["tabindex"] > 0
    ]
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("Accessibility.enable")
        reached: list[int] = []
        stays = 0  # Tab stops inside the current element (a date field has several)
        budget = len(elements) + 2 + MULTI_FIELD_STOPS * sum(e["multi"] for e in elements)
        for _ in range(budget):
            await page.keyboard.press("Tab")
            await page.evaluate(_UNTOP)
            focused = await page.evaluate(_FOCUSED)
            if focused is None:
                break  # past the last element: focus left the page
            kb = focused["kb"]
            if kb is None:
                problems.append(f"Tab reached an element not counted as interactive: {focused}")
                break
            if reached and kb == reached[-1]:
                stays += 1
                if elements[kb]["multi"] and stays < MULTI_FIELD_STOPS:
                    continue  # the next part of a date or time field
                problems.append(f"keyboard trap: Tab stays on {focused['what']}")
                break
            if kb in reached:
                problems.append(f"Tab came back to {focused['what']} (a loop)")
                break
            stays = 0
            reached.append(kb)
            problems += await _looks(page, cdp, elements[kb], focused)
        else:
            problems.append("Tab never left the page (a trap at the end)")
        expected = list(range(len(elements)))
        if reached != expected:
            missed = [elements[i]["what"] for i in expected if i not in reached]
            problems.append(
                f"Tab order {reached} is not document order {expected}; never reached: {missed}"
            )
        if len(reached) > 1:  # and back: Shift+Tab from the last stop walks the same way home
            await page.locator(f'[data-kb="{reached[-1]}"]').focus()
            back: list[int | None] = []
            for _ in range(budget):
                await page.keyboard.press("Shift+Tab")
                focused = await page.evaluate(_FOCUSED)
                kb = None if focused is None else focused["kb"]
                if kb is not None and elements[kb]["multi"] and kb == (back or reached[-1:])[-1]:
                    continue
                back.append(kb)
                if len(back) == len(reached) - 1:
                    break
            if back != reached[-2::-1]:
                problems.append(f"Shift+Tab order {back} is not the reverse of {reached}")
        problems += await _skip_link(page, elements)
    finally:
        await cdp.detach()
    return problems


async def _skip_link(page: Page, elements: list[dict[str, Any]]) -> list[str]:
    found = await page.evaluate(_SKIP_TARGET, 0)
    if found["problem"]:
        return [f"no skip link to the main content first: {found['problem']}: {elements[0]}"]
    link = page.locator('[data-kb="0"]')
    href = await link.get_attribute("href") or ""
    await link.focus()
    await page.keyboard.press("Enter")
    if not await page.evaluate(_IN_TARGET, href):
        return [f"Enter on the skip link did not move focus to {href}"]
    if found["firstInMain"] is not None:
        await page.keyboard.press("Tab")
        focused = await page.evaluate(_FOCUSED)
        if focused is None or focused["kb"] != found["firstInMain"]:
            first = elements[found["firstInMain"]]["what"]
            return [f"Tab after the skip link does not reach the main content's {first}"]
    return []


try:  # axe-core as shipped by axe-playwright-python (in requirements-test.lock)
    from axe_playwright_python.base import AXE_SCRIPT
except ImportError:  # an older venv: the tests say so (in CI it is a failure)
    AXE_SCRIPT = None

SERIOUS = ("serious", "critical")


async def axe_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations of the page, one line each."""
    assert AXE_SCRIPT is not None
    await page.evaluate(AXE_SCRIPT)  # DevTools evaluation: the page's CSP does not apply
    result = await page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"axe {v['id']} ({v['impact']}): {v['help']}: "
        + "; ".join(n["html"][:100] for n in v["nodes"][:5])
        for v in result["violations"]
        if v.get("impact") in SERIOUS
    ]
