package wallet

import (
	"math/big"
	"strconv"
	"strings"

	"github.com/buzzer-bet/buzzer"
)

// Factor is an exact decimal in [0, 1] with four fractional digits, as
// settlement void and dead-heat factors are carried: Factor(5000) is 0.5.
type Factor int64

// FactorOne is 1.0.
const FactorOne Factor = buzzer.PriceScale

// ParseFactor parses "0", "0.5", "1", "0.3333" exactly.
func ParseFactor(s string) (Factor, error) {
	bad := func() error {
		return buzzer.Errorf(buzzer.EINVALID, "factor %q must be a decimal between 0 and 1 with at most 4 fractional digits", s)
	}
	if s == "" || len(s) > 6 {
		return 0, bad()
	}
	ip, fp, _ := strings.Cut(s, ".")
	if (ip != "0" && ip != "1") || len(fp) > 4 {
		return 0, bad()
	}
	if strings.Contains(s, ".") && fp == "" {
		return 0, bad()
	}
	for _, r := range fp {
		if r < '0' || r > '9' {
			return 0, bad()
		}
	}
	for len(fp) < 4 {
		fp += "0"
	}
	f, _ := strconv.Atoi(fp)
	i, _ := strconv.Atoi(ip)
	v := Factor(i*buzzer.PriceScale + f)
	if v > FactorOne {
		return 0, bad()
	}
	return v, nil
}

func (f Factor) String() string {
	s := strconv.FormatInt(int64(f)/buzzer.PriceScale, 10) + "." + strconv.FormatInt(int64(f)%buzzer.PriceScale+buzzer.PriceScale, 10)[1:]
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// Rat returns f exactly.
func (f Factor) Rat() *big.Rat { return big.NewRat(int64(f), buzzer.PriceScale) }

// MarshalJSON encodes the factor as a JSON string.
func (f Factor) MarshalJSON() ([]byte, error) { return []byte(`"` + f.String() + `"`), nil }

// UnmarshalJSON accepts a JSON string or number literal, parsed exactly.
func (f *Factor) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := ParseFactor(s)
	if err != nil {
		return err
	}
	*f = v
	return nil
}
