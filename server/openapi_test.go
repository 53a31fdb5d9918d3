package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/server"
)

// openapiFile is server/openapi.json, the document the server embeds and
// serves at GET /openapi.json.
var openapiFile, openapiErr = os.ReadFile("openapi.json")

// loadOpenAPI parses the document into generic JSON values.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	if openapiErr != nil {
		t.Fatal(openapiErr)
	}
	var doc map[string]any
	if err := json.Unmarshal(openapiFile, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

func TestOpenAPIVersion(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info lacks title or version: %v", info)
	}
}

// The file is pretty-printed with a 2-space indent, so diffs stay readable.
func TestOpenAPIFormatted(t *testing.T) {
	if openapiErr != nil {
		t.Fatal(openapiErr)
	}
	var compact, want bytes.Buffer
	if err := json.Compact(&compact, openapiFile); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&want, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	want.WriteByte('\n')
	if !bytes.Equal(openapiFile, want.Bytes()) {
		t.Errorf("openapi.json is not indented with 2 spaces (and a final newline); reformat it, e.g. with jq --indent 2:\n%s",
			cmp.Diff(string(openapiFile), want.String()))
	}
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	refs := 0
	walkJSON(doc, "#", func(at string, v map[string]any) {
		ref, ok := v["$ref"].(string)
		if !ok {
			return
		}
		refs++
		if _, err := resolve(doc, ref); err != nil {
			t.Errorf("%s: $ref %q: %v", at, ref, err)
		}
	})
	if refs == 0 {
		t.Error("no $ref found; is the walk broken?")
	}
}

func TestOpenAPIPaths(t *testing.T) {
	doc := loadOpenAPI(t)
	paths, _ := doc["paths"].(map[string]any)
	want := map[string][]string{
		"/v1/connect-sessions":         {"post"},
		"/connect/{session}":           {"get"},
		"/callback":                    {"get"},
		"/v1/connections":              {"get"},
		"/v1/connections/{id}":         {"get", "delete"},
		"/v1/connections/{id}/token":   {"post"},
		"/v1/connections/{id}/confirm": {"post"},
		"/v1/proxy/{id}/{path}":        {"get", "post", "put", "delete", "patch"},
		"/v1/audit":                    {"get"},
		"/v1/app-token":                {"post"},
		"/v1/proxy/-/{path}":           {"get", "post", "put", "delete", "patch"},

		"/admin/v1/apps":                                     {"get", "post"},
		"/admin/v1/apps/{app}":                               {"get", "patch", "delete"},
		"/admin/v1/apps/{app}/client-secret/retire":          {"post"},
		"/admin/v1/apps/{app}/webhook-secret/rotate":         {"post"},
		"/admin/v1/apps/{app}/webhook-secret/retire":         {"post"},
		"/admin/v1/apps/{app}/api-keys":                      {"get", "post"},
		"/admin/v1/apps/{app}/api-keys/{key}/revoke":         {"post"},
		"/admin/v1/apps/{app}/events":                        {"get"},
		"/admin/v1/apps/{app}/events/redeliver":              {"post"},
		"/admin/v1/apps/{app}/events/{event}/redeliver":      {"post"},
		"/admin/v1/connections":                              {"get"},
		"/admin/v1/apps/{app}/connections/{id}":              {"get", "delete"},
		"/admin/v1/apps/{app}/connections/{id}/refresh":      {"post"},
		"/admin/v1/apps/{app}/connections/{id}/connect-link": {"post"},
		"/admin/v1/admin-keys":                               {"get"},
		"/admin/v1/admin-keys/{key}/revoke":                  {"post"},
		"/healthz":                                           {"get"},
		"/readyz":                                            {"get"},
		"/metrics":                                           {"get"},
		"/openapi.json":                                      {"get"},
		"/":                                                  {"get"},
	}
	for path, methods := range want {
		item, ok := paths[path].(map[string]any)
		if !ok {
			t.Errorf("path %s is missing", path)
			continue
		}
		for _, m := range methods {
			if _, ok := item[m].(map[string]any); !ok {
				t.Errorf("%s %s is missing", strings.ToUpper(m), path)
			}
		}
	}
	// Nothing documented that the list above does not know of: a new
	// endpoint is added here too.
	for path := range paths {
		if _, ok := want[path]; !ok {
			t.Errorf("path %s is documented but not in this test's list", path)
		}
	}
}

// Every /v1 operation needs the API key and every /admin/v1 operation an
// admin credential, never the API key; the browser and operator endpoints
// need neither.
func TestOpenAPISecurity(t *testing.T) {
	doc := loadOpenAPI(t)
	global, _ := doc["security"].([]any)
	if len(global) == 0 {
		t.Fatal("no global security requirement")
	}
	schemes := mustMap(t, mustMap(t, doc["components"])["securitySchemes"])
	for _, req := range global {
		for name := range mustMap(t, req) {
			s, _ := schemes[name].(map[string]any)
			if s["type"] != "http" || s["scheme"] != "bearer" {
				t.Errorf("security scheme %q = %v, want http bearer", name, s)
			}
		}
	}
	if s, _ := schemes["adminKey"].(map[string]any); s["type"] != "http" || s["scheme"] != "bearer" {
		t.Errorf("security scheme adminKey = %v, want http bearer", s)
	}
	forEachOperation(t, doc, func(path, method string, op map[string]any) {
		sec, overridden := op["security"].([]any)
		if strings.HasPrefix(path, "/admin/") {
			if len(sec) != 1 || len(mustMap(t, sec[0])) != 1 || mustMap(t, sec[0])["adminKey"] == nil {
				t.Errorf("%s %s: security %v, want the admin key alone", strings.ToUpper(method), path, sec)
			}
			return
		}
		public := overridden && len(sec) == 0
		if wantKey := strings.HasPrefix(path, "/v1/"); wantKey == public {
			t.Errorf("%s %s: needs the API key = %v, want %v", strings.ToUpper(method), path, !public, wantKey)
		}
	})
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// Each {name} in a path template is declared as a path parameter, and
// operation ids are unique.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	ids := map[string]string{}
	forEachOperation(t, doc, func(path, method string, op map[string]any) {
		where := strings.ToUpper(method) + " " + path
		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", where)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share operationId %q", other, where, id)
		}
		ids[id] = where
		if _, ok := op["responses"].(map[string]any); !ok {
			t.Errorf("%s has no responses", where)
		}
		declared := map[string]bool{}
		item := mustMap(t, mustMap(t, doc["paths"])[path])
		for _, list := range []any{item["parameters"], op["parameters"]} {
			ps, _ := list.([]any)
			for _, p := range ps {
				p := mustMap(t, p)
				if ref, ok := p["$ref"].(string); ok {
					r, err := resolve(doc, ref)
					if err != nil {
						continue // reported by TestOpenAPIRefsResolve
					}
					p = mustMap(t, r)
				}
				if p["in"] == "path" {
					declared[p["name"].(string)] = true
					if p["required"] != true {
						t.Errorf("%s: path parameter %v is not required", where, p["name"])
					}
				}
			}
		}
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			if !declared[m[1]] {
				t.Errorf("%s: path parameter %q is not declared", where, m[1])
			}
			delete(declared, m[1])
		}
		for name := range declared {
			t.Errorf("%s: declares path parameter %q, which is not in the path", where, name)
		}
	})
}

// The components' schemas list exactly the JSON fields of the Go types the
// server encodes: a field added to server/views.go without the document
// (or the other way round) fails here.
func TestOpenAPISchemasMatchViews(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := mustMap(t, mustMap(t, doc["components"])["schemas"])
	for name, v := range map[string]any{
		"ConnectionView": server.ConnectionView{},
		"ConnectionList": server.ConnectionList{},
		"TokenResponse":  server.TokenResponse{},
		"ConnectSession": server.ConnectSession{},
		"ErrorResponse":  server.ErrorResponse{},

		"AppView":             server.AppView{},
		"BrowserAppView":      server.BrowserAppView{},
		"ConnectionCounts":    server.ConnectionCounts{},
		"AppList":             server.AppList{},
		"AppChange":           server.AppChange{},
		"APIKeyView":          server.APIKeyView{},
		"APIKeyList":          server.APIKeyList{},
		"NewAPIKey":           server.NewAPIKey{},
		"AdminKeyView":        server.AdminKeyView{},
		"AdminKeyList":        server.AdminKeyList{},
		"EventView":           server.EventView{},
		"EventList":           server.EventList{},
		"Redelivery":          server.Redelivery{},
		"AdminConnectionView": server.AdminConnectionView{},
		"AdminConnectionList": server.AdminConnectionList{},
		"AuditRecordView":     server.AuditRecordView{},
		"AuditActorView":      server.AuditActorView{},
		"AuditList":           server.AuditList{},
	} {
		t.Run(name, func(t *testing.T) {
			schema, ok := schemas[name].(map[string]any)
			if !ok {
				t.Fatalf("components.schemas.%s is missing", name)
			}
			if schema["type"] != "object" {
				t.Errorf("type = %v, want object", schema["type"])
			}
			fields := jsonFields(reflect.TypeOf(v))
			props, _ := schema["properties"].(map[string]any)
			var gotNames, wantNames, gotRequired, wantRequired []string
			for n := range props {
				gotNames = append(gotNames, n)
			}
			for _, f := range fields {
				wantNames = append(wantNames, f.name)
				if !f.omitempty {
					wantRequired = append(wantRequired, f.name)
				}
			}
			req, _ := schema["required"].([]any)
			for _, r := range req {
				gotRequired = append(gotRequired, r.(string))
			}
			sort.Strings(gotNames)
			sort.Strings(wantNames)
			sort.Strings(gotRequired)
			sort.Strings(wantRequired)
			if diff := cmp.Diff(gotNames, wantNames); diff != "" {
				t.Errorf("properties differ from the Go struct's json fields (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(gotRequired, wantRequired); diff != "" {
				t.Errorf("required differs from the Go struct's fields without omitempty (-got +want):\n%s", diff)
			}
			for _, f := range fields {
				p, ok := props[f.name].(map[string]any)
				if !ok {
					continue
				}
				if err := matchesType(doc, p, f.typ); err != nil {
					t.Errorf("%s: %v", f.name, err)
				}
			}
		})
	}
}

type jsonField struct {
	name      string
	omitempty bool
	typ       reflect.Type
}

// jsonFields returns the fields encoding/json writes for struct type t.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty"), typ: f.Type})
	}
	return out
}

var timeType = reflect.TypeFor[time.Time]()

// matchesType reports whether the property schema p (after $ref) describes
// values of Go type t: a string with format date-time for a time, an array
// for a slice, and so on.
func matchesType(doc map[string]any, p map[string]any, t reflect.Type) error {
	if ref, ok := p["$ref"].(string); ok {
		r, err := resolve(doc, ref)
		if err != nil {
			return err
		}
		rm, ok := r.(map[string]any)
		if !ok {
			return fmt.Errorf("$ref %q is not an object", ref)
		}
		p = rm
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var wantType, wantFormat string
	switch {
	case t == timeType:
		wantType, wantFormat = "string", "date-time"
	case t.Kind() == reflect.String:
		wantType = "string"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		wantType = "integer"
	case t.Kind() == reflect.Bool:
		wantType = "boolean"
	case t.Kind() == reflect.Slice:
		wantType = "array"
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		wantType = "object"
	default:
		return fmt.Errorf("unhandled Go type %s", t)
	}
	if p["type"] != wantType {
		return fmt.Errorf("type = %v, want %q for Go %s", p["type"], wantType, t)
	}
	if wantFormat != "" && p["format"] != wantFormat {
		return fmt.Errorf("format = %v, want %q for Go %s", p["format"], wantFormat, t)
	}
	if wantType == "array" {
		items, ok := p["items"].(map[string]any)
		if !ok {
			return errors.New("array without items")
		}
		return matchesType(doc, items, t.Elem())
	}
	return nil
}

// resolve follows a local reference ("#/components/schemas/X") in doc.
func resolve(doc map[string]any, ref string) (any, error) {
	ptr, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, errors.New("not a local reference")
	}
	var cur any = doc
	if ptr == "" {
		return cur, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, errors.New("malformed JSON pointer")
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("no index %q", tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%q is not in an object or array", tok)
		}
	}
	return cur, nil
}

// walkJSON calls fn on every object in v, with its JSON pointer.
func walkJSON(v any, at string, fn func(at string, obj map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(at, v)
		for k, e := range v {
			walkJSON(e, at+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"), fn)
		}
	case []any:
		for i, e := range v {
			walkJSON(e, at+"/"+strconv.Itoa(i), fn)
		}
	}
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// forEachOperation calls fn on every operation under paths.
func forEachOperation(t *testing.T, doc map[string]any, fn func(path, method string, op map[string]any)) {
	t.Helper()
	for path, item := range mustMap(t, doc["paths"]) {
		for _, m := range httpMethods {
			if op, ok := mustMap(t, item)[m].(map[string]any); ok {
				fn(path, m, op)
			}
		}
	}
}

func mustMap(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%T is not a JSON object", v)
	}
	return m
}

// TestOpenAPIDocsCopy: docs/openapi.json is the document the server serves.
func TestOpenAPIDocsCopy(t *testing.T) {
	served, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile(filepath.Join("..", "docs", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served, docs) {
		t.Error("docs/openapi.json differs from server/openapi.json; run: cp server/openapi.json docs/openapi.json")
	}
}
