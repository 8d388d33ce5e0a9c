package fallback

import (
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/uia"
)

func TestStagePageEscapesEveryValueItShows(t *testing.T) {
	var b strings.Builder
	evil := `"><script>alert(1)</script>`
	err := renderStage(&b, stageData{Stage: uia.StagePassword, Session: evil, Error: evil, ServerName: evil})
	if err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script>alert") || strings.Contains(page, `"><`) {
		t.Fatalf("unescaped value in page:\n%s", page)
	}
	for _, want := range []string{`value="&#34;&gt;&lt;script&gt;`, `id="password"`, `id="error"`, "<title>Authentication — &#34;&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s:\n%s", want, page)
		}
	}
}
