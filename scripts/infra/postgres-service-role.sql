-- docker-compose.kafka.yml: the service's role, beside the owner the image creates
-- (POSTGRES_USER). The service reads and writes rows; the migrations, run as the owner,
-- grant it that and nothing more. scripts/infra.sh makes the same two roles.
CREATE ROLE shopflow LOGIN PASSWORD 'shopflow';
