package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// InLazyTx is the group commit's transaction (inLazyTx at SERIALIZABLE).
func (db *DB) InLazyTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.inLazyTx(ctx, pgx.Serializable, fn)
}

// SendFinal is sendFinal.
func SendFinal(ctx context.Context, tx pgx.Tx, b *pgx.Batch) pgx.BatchResults {
	return sendFinal(ctx, tx, b)
}
