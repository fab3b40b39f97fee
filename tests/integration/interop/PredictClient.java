// A JVM team's client of maas, with nothing from maas: Apache's kafka-clients and Jackson.
// It publishes one PredictJob as JSON, keyed by its job_id, on <prefix>predict, and prints
// the Result that answers it (the record keyed by that job_id on <prefix>results).
//
//   javac -cp 'kafka-clients.jar:slf4j-api.jar:jackson-*.jar' PredictClient.java
//   java -cp '.:kafka-clients.jar:slf4j-api.jar:jackson-*.jar' PredictClient BOOTSTRAP PREFIX JOB_ID
//
// The producer keeps the client's defaults: idempotent, acks=all.
//
// Exit 0 with the Result's JSON on stdout, 1 when none arrives within 30 s.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class PredictClient {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], prefix = args[1], jobId = args[2];
        String replies = prefix + "results";
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerConfig(bootstrap));
             KafkaProducer<String, String> producer =
                     new KafkaProducer<>(producerConfig(bootstrap))) {
            // Read the reply topic from its end as it is now: no group, nothing replayed.
            List<TopicPartition> partitions = consumer.partitionsFor(replies).stream()
                    .map(p -> new TopicPartition(replies, p.partition()))
                    .toList();
            consumer.assign(partitions);
            consumer.seekToEnd(partitions);
            partitions.forEach(consumer::position);

            String job = JSON.writeValueAsString(predictJob(jobId, replies));
            producer.send(new ProducerRecord<>(prefix + "predict", jobId, job)).get();

            Instant deadline = Instant.now().plusSeconds(30);
            while (Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    if (!jobId.equals(record.key())) {
                        continue; // another client's Result
                    }
                    JsonNode result = JSON.readTree(record.value());
                    if (jobId.equals(result.path("job_id").asText())) {
                        System.out.println(record.value());
                        return;
                    }
                }
            }
        }
        System.err.println("no Result for " + jobId + " within 30 s");
        System.exit(1);
    }

    /** A PredictJob (maas.predict/v1) for the digits model: two rows of 64 pixels. */
    static ObjectNode predictJob(String jobId, String replyTo) {
        ObjectNode job = JSON.createObjectNode()
                .put("schema", "maas.predict/v1")
                .put("job_id", jobId)
                .put("model", "digits")
                .put("alias", "production")
                .put("reply_to", replyTo);
        ArrayNode rows = job.putObject("inputs").putArray("x");
        for (double pixel : new double[] {0.0, 16.0}) {
            ArrayNode row = rows.addArray();
            for (int i = 0; i < 64; i++) {
                row.add(pixel);
            }
        }
        job.putObject("metadata").put("caller", "java-kafka-clients");
        return job;
    }

    static Properties producerConfig(String bootstrap) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return config;
    }

    static Properties consumerConfig(String bootstrap) {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return config;
    }
}
