DROP TABLE batches;
DROP TABLE products;
