"""The result sink's partitioner puts a key where any Kafka client would."""

from aiokafka.partitioner import DefaultPartitioner

from shopflow.producers.publisher import keyed_partitioner


def test_the_result_partitioner_agrees_with_the_kafka_default() -> None:
    partitions = list(range(12))
    for key in [b"1", b"42", b"1898594631279618705", "é".encode()]:
        expected = DefaultPartitioner()(key, partitions, partitions)
        assert keyed_partitioner(key, partitions, partitions) == expected
        assert keyed_partitioner(key, partitions, partitions) == expected  # memoised


def test_a_message_without_a_key_goes_to_an_available_partition() -> None:
    assert keyed_partitioner(None, list(range(12)), [3]) == 3
