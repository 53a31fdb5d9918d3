package console_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/spotoken/spotoken/internal/browsertest"
)

// The console's browser tests drive a real headless Chromium as a person
// would: type, click, read the page. They skip when no chromium is
// installed, unless SPOTOKEN_TEST_BROWSER is "required".
//
// Screenshots are test artifacts: each is written to the test's temporary
// directory and logged, and, when SPOTOKEN_TEST_SCREENSHOT_DIR is set,
// kept there too (console-<page>-<width>.png).

const browserTimeout = 5 * time.Minute

// The widths every page is checked at: a laptop, and a phone.
var widths = []int64{1280, 390}

// browser is a headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts a fresh headless Chromium (own profile, so no cookie
// from another test) at 1280×900, or skips the test without chromium (fails
// it with SPOTOKEN_TEST_BROWSER=required); its actions must end within
// browserTimeout. Call it first, before building what the test needs.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	return &browser{t: t, ctx: browsertest.New(t, browserTimeout, 1280, 900)}
}

// stepTimeout bounds one step, so a page that never shows what a step
// waits for fails the test with a screenshot instead of using up the whole
// browserTimeout.
const stepTimeout = 45 * time.Second

// do runs actions, failing the test with what they were for, and a
// screenshot of where the browser got stuck.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("console-failed-step.png")
		b.t.Fatalf("browser: %s: %v (at %s)", what, err, b.location())
	}
}

// navigate runs actions that load another page (a click on a link or a
// button, a form sent), then waits for that page's element wait: an
// element the page before may have had too, so the old page is marked
// first and the wait begins once it is gone.
func (b *browser) navigate(what string, wait string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	steps := append([]chromedp.Action[chromedp.Void]{
		chromedp.Evaluate[chromedp.Void](`document.documentElement.dataset.stale = "1"`),
	}, actions...)
	steps = append(steps, chromedp.WaitNotPresent(chromedp.CSS("html[data-stale]")), chromedp.WaitVisible(chromedp.CSS(wait)))
	b.do(what, steps...)
}

// text reads an element's text.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: read %s: %v", sel, err)
	}
	return s
}

// value reads an input's value.
func (b *browser) value(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: read the value of %s: %v", sel, err)
	}
	return s
}

// html is the page's markup.
func (b *browser) html() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		b.t.Fatalf("browser: read the page: %v", err)
	}
	return s
}

func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatalf("browser: location: %v", err)
	}
	return loc
}

// has reports whether sel matches an element now.
func (b *browser) has(sel string) bool {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
	if err != nil {
		b.t.Fatalf("browser: count %s: %v", sel, err)
	}
	return n > 0
}

// overflowJS lists what sticks out at the current width: the page wider
// than the viewport, any element whose right edge is past the viewport's,
// and any table, cell or container whose content is wider than itself
// (clipped or scrolled). Elements the page hides on purpose are skipped:
// those clipped to nothing for screen readers only (the visually-hidden
// labels, the table headings of narrow screens), the content of closed
// details (which Chromium lays out, unseen) and those with no box.
const overflowJS = `(() => {
  const de = document.documentElement, vw = de.clientWidth, out = [];
  if (de.scrollWidth > vw) out.push("the page is " + de.scrollWidth + "px wide in a " + vw + "px viewport");
  const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (typeof el.className === "string" && el.className ? "." + el.className.trim().replace(/\s+/g, ".") : "") +
    (el.dataset && el.dataset.connection ? "[" + el.dataset.connection + "]" : "");
  const clipped = el => { for (let e = el; e; e = e.parentElement) if (getComputedStyle(e).clip.startsWith("rect")) return true; return false; };
  for (const el of document.body.querySelectorAll("*")) {
    if (clipped(el) || el.closest("details:not([open]) > :not(summary)")) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > vw + 0.5) out.push(name(el) + " ends at " + Math.round(r.right) + "px, past the " + vw + "px viewport");
    if (/^(TABLE|THEAD|TBODY|TR|TH|TD|MAIN|SECTION|FORM|DL|DD|NAV|HEADER|UL|OL|LI|DIV|FIGURE|P)$/.test(el.tagName) &&
        el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
      out.push(name(el) + " holds " + el.scrollWidth + "px of content in " + el.clientWidth + "px");
  }
  return out.slice(0, 20);
})()`

// checkWidths shows the current page at each width, fails on anything that
// sticks out, and keeps a screenshot of each, named page. Each width is
// measured twice: with a classic scrollbar taking 15px of it (a desktop
// browser's), and with overlay scrollbars (a phone's), the screenshot then,
// so that it shows the page exactly as wide as it was measured.
func (b *browser) checkWidths(page string) {
	b.t.Helper()
	for _, w := range widths {
		for _, hidden := range []bool{false, true} {
			// The viewport set again after the scrollbars, which take
			// effect at the next layout of a new size.
			b.do("resize to "+fmt.Sprint(w), scrollbarsHidden(hidden), chromedp.EmulateViewport(w+1, 900), chromedp.EmulateViewport(w, 900))
			problems, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](overflowJS))
			if err != nil {
				b.t.Fatalf("browser: measure %s at %dpx: %v", page, w, err)
			}
			if len(problems) > 0 {
				b.t.Errorf("%s at %dpx (scrollbars hidden: %v) overflows:\n  %s", page, w, hidden, strings.Join(problems, "\n  "))
			}
		}
		b.shot(fmt.Sprintf("console-%s-%d.png", page, w))
	}
	b.do("scrollbars", scrollbarsHidden(false))
	b.do("back to 1280", chromedp.EmulateViewport(1280, 900))
}

// scrollbarsHidden hides the scrollbars, as a phone's overlay ones, or
// shows them.
func scrollbarsHidden(hidden bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetScrollbarsHidden, emulation.SetScrollbarsHiddenParams{Hidden: hidden})
		return err
	})
}

// shot keeps a full-page screenshot as name (see browsertest.Screenshot),
// and the first screenful, to look at without scrolling, as name-view.
func (b *browser) shot(name string) {
	b.t.Helper()
	browsertest.Screenshot(b.t, b.ctx, name)
	view, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("browser: screenshot: %v", err)
	}
	browsertest.Keep(b.t, strings.TrimSuffix(name, ".png")+"-view.png", view)
}
