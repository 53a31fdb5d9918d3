package emulator_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The emulator is held to SPOTIFY.md row by row: docs/emulator.md maps every
// row of SPOTIFY.md's tables (by its first cell, verbatim) to the tests that
// cover it, and lists every other modelled behaviour with its source and
// tests. TestSpotifyRowsCovered fails when a row has no mapped test, when a
// mapped test does not exist in this package, or when the map names a row
// SPOTIFY.md no longer has.

// spotifyMDPath finds SPOTIFY.md: $SPOTOKEN_SPOTIFY_MD, else ../shared/
// beside the repository root, where CI keeps it.
func spotifyMDPath() string {
	if p := os.Getenv("SPOTOKEN_SPOTIFY_MD"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "shared", "SPOTIFY.md")
}

// mdTableRows returns the first cell of every body row of every Markdown
// table in md: the rows after a header and its |---| separator.
func mdTableRows(md []byte) []string {
	var rows []string
	for _, r := range mdTables(md) {
		rows = append(rows, r[0])
	}
	return rows
}

// mdTables returns the cells of every body row of every table in md.
func mdTables(md []byte) [][]string {
	var rows [][]string
	var prev string
	inTable := false
	sc := bufio.NewScanner(bytes.NewReader(md))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case !strings.HasPrefix(line, "|"):
			inTable = false
		case separatorRow.MatchString(line):
			inTable = strings.HasPrefix(prev, "|")
		case inTable:
			rows = append(rows, cells(line))
		}
		prev = line
	}
	return rows
}

var separatorRow = regexp.MustCompile(`^\|(\s*:?-+:?\s*\|)+$`)

// cells splits a table row into its trimmed cells.
func cells(line string) []string {
	parts := strings.Split(strings.Trim(line, "|"), "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// mdSection returns the lines of md under the heading title, up to the next
// heading of the same or a higher level.
func mdSection(md []byte, title string) []byte {
	lines := strings.Split(string(md), "\n")
	for i, l := range lines {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || strings.TrimSpace(l[level:]) != title {
			continue
		}
		var out []string
		for _, m := range lines[i+1:] {
			if n := len(m) - len(strings.TrimLeft(m, "#")); n > 0 && n <= level && strings.HasPrefix(m[n:], " ") {
				break
			}
			out = append(out, m)
		}
		return []byte(strings.Join(out, "\n"))
	}
	return nil
}

// testRefs are the `TestName`, `TestName/subtest` or `FuzzName`
// references in a cell.
var testRefs = regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)(/[^`]*)?`")

// packageTests lists the Test and Fuzz functions of this package's test files.
func packageTests(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && (strings.HasPrefix(fn.Name.Name, "Test") || strings.HasPrefix(fn.Name.Name, "Fuzz")) {
				tests[fn.Name.Name] = true
			}
		}
	}
	return tests
}

// mappedTests reads a table of docs/emulator.md's section title: its first
// cell, and the tests named in its last cell.
func mappedTests(t *testing.T, doc []byte, title string) map[string][]string {
	t.Helper()
	section := mdSection(doc, title)
	if section == nil {
		t.Fatalf("docs/emulator.md has no section %q", title)
	}
	out := map[string][]string{}
	for _, c := range mdTables(section) {
		if _, dup := out[c[0]]; dup {
			t.Errorf("docs/emulator.md, %s: row %q is there twice", title, c[0])
		}
		out[c[0]] = nil
		for _, m := range testRefs.FindAllStringSubmatch(c[len(c)-1], -1) {
			out[c[0]] = append(out[c[0]], m[1])
		}
	}
	if len(out) == 0 {
		t.Fatalf("docs/emulator.md, %s: no table", title)
	}
	return out
}

const (
	rowsSection       = "SPOTIFY.md, row by row"
	behavioursSection = "What is modelled, and from which source"
)

func TestSpotifyRowsCovered(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "emulator.md"))
	if err != nil {
		t.Fatal(err)
	}
	tests := packageTests(t)
	check := func(title string, mapped map[string][]string) {
		for row, names := range mapped {
			if len(names) == 0 {
				t.Errorf("docs/emulator.md, %s: %q names no test", title, row)
			}
			for _, n := range names {
				if !tests[n] {
					t.Errorf("docs/emulator.md, %s: %q names %s, which is not a test of package emulator", title, row, n)
				}
			}
		}
	}
	rows := mappedTests(t, doc, rowsSection)
	check(rowsSection, rows)
	check(behavioursSection, mappedTests(t, doc, behavioursSection))

	path := spotifyMDPath()
	md, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("SPOTIFY.md is not at %s (set SPOTOKEN_SPOTIFY_MD to its path): the map's tests exist, "+
			"but whether it covers every row of SPOTIFY.md's tables was not checked", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := mdTableRows(md)
	if len(want) == 0 {
		t.Fatalf("%s has no table rows", path)
	}
	for _, row := range want {
		if _, ok := rows[row]; !ok {
			t.Errorf("SPOTIFY.md row %q has no test: add it to docs/emulator.md, %q, with the tests that cover it", row, rowsSection)
		}
	}
	for row := range rows {
		if !slices.Contains(want, row) {
			t.Errorf("docs/emulator.md, %s: %q is not a row of SPOTIFY.md's tables (changed or removed?)", rowsSection, row)
		}
	}
	t.Logf("%d rows of SPOTIFY.md's tables, each mapped to tests that exist", len(want))
}

// TestMarkdownTableRows checks the table reader itself on a small document.
func TestMarkdownTableRows(t *testing.T) {
	md := []byte("# Title\n\ntext | not a table\n\n| a | b |\n|---|---|\n| one | 1 |\n| `two` (x) | 2 |\n\n| c |\n|:--|\n| three |\n")
	if got, want := mdTableRows(md), []string{"one", "`two` (x)", "three"}; !slices.Equal(got, want) {
		t.Errorf("rows = %q, want %q", got, want)
	}
	doc := []byte("## A\n| x | t |\n|---|---|\n| r | `TestA`, `TestB/sub` |\n## B\n| y | t |\n|---|---|\n| s | `TestC` |\n")
	got := mappedTests(t, doc, "A")
	if len(got) != 1 || !slices.Equal(got["r"], []string{"TestA", "TestB"}) {
		t.Errorf("mapped = %v", got)
	}
}
