package server

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
)

//go:embed templates
var templateFS embed.FS

var flowTemplate = template.Must(template.ParseFS(templateFS, "templates/flow.html"))

// flowPage shows the user the outcome of a connect flow.
func (s *Server) flowPage(w http.ResponseWriter, r *http.Request, status int, outcome, connectionID string) {
	s.metrics.connectFlow(outcome)
	var buf bytes.Buffer
	err := flowTemplate.Execute(&buf, struct {
		OK                     bool
		Outcome, Message, Conn string
	}{outcome == flowConnected, outcome, flowMessages[outcome], connectionID})
	if err != nil {
		s.log.Error("render flow page", "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
