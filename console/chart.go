package console

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// The app page's small charts: refreshes, failures and 429s per hour over
// the last 24 hours, from the hourly refresh tallies (spotoken.TallyStore:
// each replica counts in memory and adds its counts every few seconds, so
// reading a day is 24 rows per app whatever the traffic). They are inline
// SVG made here: bars as rectangles whose coordinates are computed on the
// server, so the page needs no script and no inline style.

// Chart geometry, in the SVG's user units.
const (
	chartHours  = 24
	chartBar    = 10 // width of an hour, bar and gap
	chartWidth  = chartHours * chartBar
	chartHeight = 60
	chartTop    = 4 // room above the tallest bar
)

// chartView is one small chart.
type chartView struct {
	// ID names the chart for tests and labels (refreshed, failed,
	// rate_limited); Title says what it counts.
	ID, Title, Class string
	Total, Peak      int64
	Width, Height    int
	Bars             []barView
	// Summary is the chart's text alternative.
	Summary string
}

// barView is an hour's bar; the coordinates are strings for the template.
type barView struct {
	X, Y, W, H string
	// Label is the bar's tooltip and text alternative: the hour and count.
	Label string
}

// charts reads the app's tallies since 23 hours before the current hour
// and makes the three charts, with the start of the first hour shown.
func (h *Handler) charts(ctx context.Context, app string, now time.Time) ([]chartView, string, error) {
	end := now.UTC().Truncate(time.Hour)
	start := end.Add(-(chartHours - 1) * time.Hour)
	tallies, err := h.cfg.Store.RefreshTallies(ctx, app, start)
	if err != nil {
		return nil, "", err
	}
	var refreshed, failed, limited [chartHours]int64
	for _, t := range tallies {
		i := int(t.Hour.Sub(start) / time.Hour)
		if i < 0 || i >= chartHours {
			continue
		}
		refreshed[i] += t.Refreshed
		failed[i] += t.Failed
		limited[i] += t.RateLimited
	}
	charts := []chartView{
		newChart("refreshed", "Refreshes", "ok", refreshed, start, "refresh"),
		newChart("failed", "Failures", "bad", failed, start, "failure"),
		newChart("rate_limited", "429s (rate-limited)", "warn", limited, start, "429"),
	}
	return charts, start.Format("2006-01-02 15:04 UTC"), nil
}

func newChart(id, title, class string, counts [chartHours]int64, start time.Time, unit string) chartView {
	c := chartView{ID: id, Title: title, Class: class, Width: chartWidth, Height: chartHeight}
	for _, n := range counts {
		c.Total += n
		c.Peak = max(c.Peak, n)
	}
	for i, n := range counts {
		hour := start.Add(time.Duration(i) * time.Hour)
		h := 0
		if n > 0 {
			// At least a pixel for any count, the peak at full height.
			h = max(1, int(float64(n)/float64(c.Peak)*float64(chartHeight-chartTop)+0.5))
		}
		c.Bars = append(c.Bars, barView{
			X: strconv.Itoa(i*chartBar + 1), Y: strconv.Itoa(chartHeight - h), W: strconv.Itoa(chartBar - 2), H: strconv.Itoa(h),
			Label: fmt.Sprintf("%s–%s UTC: %d %s", hour.Format("15:04"), hour.Add(time.Hour).Format("15:04"), n, plural(n, unit)),
		})
	}
	c.Summary = fmt.Sprintf("%s over the last 24 hours: %d in all, at most %d in an hour.", title, c.Total, c.Peak)
	return c
}

func plural(n int64, unit string) string {
	if n == 1 {
		return unit
	}
	return unit + "s"
}
