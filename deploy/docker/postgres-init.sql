-- Run once by the postgres image, when its data volume is empty (docker-entrypoint-initdb.d).
-- One database per service, all owned by the sagakit role: no service reads another's tables.
-- To run it again: docker compose -f deploy/docker-compose.yml down --volumes.
CREATE ROLE sagakit LOGIN PASSWORD 'sagakit';
CREATE DATABASE sagakit_order OWNER sagakit;
CREATE DATABASE sagakit_payment OWNER sagakit;
CREATE DATABASE sagakit_inventory OWNER sagakit;
CREATE DATABASE sagakit_shipping OWNER sagakit;
