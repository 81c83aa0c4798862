package buzzer

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Amount is money in integer minor units of its currency (cents for USD).
// Never a float.
type Amount int64

// Currency is an ISO 4217 alphabetic code such as "USD".
type Currency string

// Validate reports whether c is three upper-case ASCII letters.
func (c Currency) Validate() error {
	if len(c) != 3 {
		return Errorf(EINVALID, "currency must be a three-letter ISO 4217 code")
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return Errorf(EINVALID, "currency must be a three-letter ISO 4217 code")
		}
	}
	return nil
}

// PriceScale is the number of Price units in 1.0: prices are exact decimals
// with four fractional digits.
const PriceScale = 10000

// Price is decimal (European) odds as an exact fixed-point number with four
// fractional digits: Price(19091) is 1.9091. A valid price is > 1.0.
type Price int64

// MinPrice and MaxPrice bound the prices Buzzer accepts (1.0001 .. 10000.0).
const (
	MinPrice Price = PriceScale + 1
	MaxPrice Price = 10000 * PriceScale
)

// ParsePrice parses a decimal string such as "2.5" or "1.9091" exactly. More
// than four fractional digits, signs, exponents or values outside
// [MinPrice, MaxPrice] are rejected.
func ParsePrice(s string) (Price, error) {
	bad := func() error {
		return Errorf(EINVALID, "price %q is not a decimal with at most 4 fractional digits between 1.0001 and 10000", s)
	}
	if s == "" || len(s) > 16 {
		return 0, bad()
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" || len(frac) > 4 {
		return 0, bad()
	}
	for _, r := range intPart + frac {
		if r < '0' || r > '9' {
			return 0, bad()
		}
	}
	i, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || i > int64(MaxPrice/PriceScale) {
		return 0, bad()
	}
	for len(frac) < 4 {
		frac += "0"
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	p := Price(i*PriceScale + f)
	if p < MinPrice || p > MaxPrice {
		return 0, bad()
	}
	return p, nil
}

// String formats p with its significant fractional digits (at least two).
func (p Price) String() string {
	s := fmt.Sprintf("%d.%04d", int64(p)/PriceScale, int64(p)%PriceScale)
	for strings.HasSuffix(s, "0") && len(s)-strings.IndexByte(s, '.') > 3 {
		s = s[:len(s)-1]
	}
	return s
}

// MarshalText encodes the price as its decimal string.
func (p Price) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText decodes a decimal string; JSON numbers and strings both work
// through MarshalJSON/UnmarshalJSON below.
func (p *Price) UnmarshalText(b []byte) error {
	v, err := ParsePrice(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalJSON encodes the price as a JSON string ("2.5"), so no client parses
// odds into a binary float by accident.
func (p Price) MarshalJSON() ([]byte, error) { return []byte(`"` + p.String() + `"`), nil }

// UnmarshalJSON accepts a JSON string or a JSON number literal, parsed exactly.
func (p *Price) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return p.UnmarshalText([]byte(s))
}

// Rat returns p as an exact rational.
func (p Price) Rat() *big.Rat { return big.NewRat(int64(p), PriceScale) }

// Payout returns floor(stake × product(prices)), computed exactly. Rounding is
// always down to the minor unit, in the house's favour, and is documented in
// docs/wallet.md. It fails if the result does not fit in an Amount.
func Payout(stake Amount, prices ...Price) (Amount, error) {
	r := new(big.Rat).SetInt64(int64(stake))
	for _, p := range prices {
		r.Mul(r, p.Rat())
	}
	q := new(big.Int).Quo(r.Num(), r.Denom()) // both positive: Quo truncates = floor
	if !q.IsInt64() || q.Int64() > math.MaxInt64/2 {
		return 0, Errorf(EINVALID, "payout overflows")
	}
	return Amount(q.Int64()), nil
}
