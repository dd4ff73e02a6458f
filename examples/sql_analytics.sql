-- Card analytics in SQL over the bundled transactions (a file is a stream that ends):
--   actorflow sql examples/sql_analytics.sql
-- Spending per card in 10-second windows; purchases under 1.00 followed within a minute by one
-- over 500.00 on the same card (an interval join); and the three merchants with the most spending
-- in each 2-second window (a window Top-N) with their names and categories from a merchants table
-- (a regular join). Rows print as Flink's print connector prints them.

CREATE TABLE tx (
  tx_id BIGINT, card_id STRING, merchant_id STRING, amount DOUBLE, ts BIGINT,
  rowtime AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rowtime AS rowtime - INTERVAL '5' SECOND
) WITH ('connector' = 'jsonlines', 'path' = 'examples/data/transactions.jsonl');

CREATE TABLE merchants (merchant_id STRING, name STRING, category STRING)
WITH ('connector' = 'jsonlines', 'path' = 'examples/data/merchants.jsonl');

CREATE TABLE spend (card_id STRING, window_end TIMESTAMP_LTZ(3), n BIGINT, total DOUBLE)
WITH ('connector' = 'print', 'print-identifier' = 'spend');

CREATE TABLE probes (card_id STRING, small_tx BIGINT, large_tx BIGINT, seconds DOUBLE)
WITH ('connector' = 'print', 'print-identifier' = 'probe');

CREATE TABLE top_merchants (window_end TIMESTAMP_LTZ(3), place BIGINT, name STRING, category STRING,
                            total DOUBLE)
WITH ('connector' = 'print', 'print-identifier' = 'top');

-- Each merchant's spending per 2-second window, ranked within the window: the three first of each.
CREATE VIEW top_spending AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY total DESC) AS rn
  FROM (
    SELECT window_start, window_end, merchant_id, ROUND(SUM(amount), 2) AS total
    FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '2' SECOND))
    GROUP BY window_start, window_end, merchant_id))
WHERE rn <= 3;

INSERT INTO spend
SELECT card_id, window_end, COUNT(*), ROUND(SUM(amount), 2)
FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
GROUP BY card_id, window_start, window_end
HAVING SUM(amount) > 2000;

INSERT INTO probes
SELECT s.card_id, s.tx_id AS small_tx, l.tx_id AS large_tx, (l.ts - s.ts) / 1000.0 AS seconds
FROM tx s JOIN tx l ON s.card_id = l.card_id
  AND l.rowtime BETWEEN s.rowtime AND s.rowtime + INTERVAL '1' MINUTE
WHERE s.amount < 1 AND l.amount > 500;

INSERT INTO top_merchants
SELECT t.window_end, t.rn, m.name, m.category, t.total
FROM top_spending t JOIN merchants m ON t.merchant_id = m.merchant_id;
