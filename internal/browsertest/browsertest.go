// Package browsertest starts the headless Chromium that spotoken's browser
// tests drive through chromedp, and keeps their screenshots.
//
// A test that needs a browser skips when no chromium is installed, unless
// SPOTOKEN_TEST_BROWSER is "required", which makes that a failure.
// SPOTOKEN_TEST_SCREENSHOT_DIR, when set, also receives the screenshots.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// New starts a fresh headless Chromium (its own profile, so no cookie from
// another test) with the window width × height, and returns a tab context
// bounded by timeout. The browser stops when the test ends.
func New(t testing.TB, timeout time.Duration, width, height int, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("SPOTOKEN_TEST_BROWSER") == "required" {
			t.Fatalf("chromium not found (%v) and SPOTOKEN_TEST_BROWSER=required: install the Debian package chromium", err)
		}
		t.Skipf("chromium not found (%v): skipping the browser test; install the Debian package chromium, or set SPOTOKEN_TEST_BROWSER=required to make this a failure", err)
	}
	profile := t.TempDir() // registered before the cancels below, so removed after Chromium exits

	timeoutCtx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancelTimeout)
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true), // only loopback hosts are ever asked for
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(profile),
	}, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(timeoutCtx, opts...)
	t.Cleanup(cancelAlloc) // waits for the browser process to exit
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // start the browser now, so a launch failure is reported as such
		t.Fatalf("starting chromium %s: %v", path, err)
	}
	return ctx
}

// Screenshot writes a full-page screenshot of the tab to t.TempDir() and,
// when SPOTOKEN_TEST_SCREENSHOT_DIR is set, there too, as name.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("SPOTOKEN_TEST_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("screenshot dir: %v", err)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatalf("write screenshot: %v", err)
		}
		t.Logf("screenshot: %s", p)
	}
}
