DROP TABLE exports;
DROP TABLE attachments;
