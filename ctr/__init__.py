"""CTR side: prepared datasets (`ctr prepare`), CTR models and the student's knowledge inside them."""
