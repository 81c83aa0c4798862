// Package layout holds the tests that enforce Buzzer's code layout (STYLE.md):
// domain packages import no engine and no transport, and every package has a
// doc comment. It has no code of its own and must never be imported.
package layout
