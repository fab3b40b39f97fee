// A JVM team's client of maas, with nothing from maas: Apache's kafka-clients and Jackson.
// It publishes one PredictJob as JSON, keyed by its job_id, on <prefix>predict, and prints
// the Result that answers it (the record keyed by that job_id on <prefix>results).
// With a fourth argument "oip" it publishes an Open Inference Protocol InferenceRequest
// instead, as MLServer's Kafka clients do (header mlserver-model, key = request id), and
// prints the InferenceResponse keyed by that id.
//
//   javac -cp 'kafka-clients.jar:slf4j-api.jar:jackson-*.jar' PredictClient.java
//   java -cp '.:kafka-clients.jar:slf4j-api.jar:jackson-*.jar' PredictClient BOOTSTRAP PREFIX JOB_ID [oip]
//
// The producer keeps the client's defaults: idempotent, acks=all.
//
// Exit 0 with the Result's JSON on stdout, 1 when none arrives within 30 s.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import static java.nio.charset.StandardCharsets.UTF_8;

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
        boolean oip = args.length > 3 && args[3].equals("oip");
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

            ProducerRecord<String, String> request;
            if (oip) {
                String body = JSON.writeValueAsString(inferenceRequest());
                request = new ProducerRecord<>(prefix + "predict", jobId, body);
                request.headers().add("mlserver-model", "digits".getBytes(UTF_8));
            } else {
                String job = JSON.writeValueAsString(predictJob(jobId, replies));
                request = new ProducerRecord<>(prefix + "predict", jobId, job);
            }
            producer.send(request).get();

            Instant deadline = Instant.now().plusSeconds(30);
            while (Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    if (!jobId.equals(record.key())) {
                        continue; // another client's Result
                    }
                    JsonNode result = JSON.readTree(record.value());
                    String id = result.path(oip ? "id" : "job_id").asText();
                    if (jobId.equals(id)) {
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

    /** An OIP InferenceRequest for the digits model: two rows of 64 pixels, flat. */
    static ObjectNode inferenceRequest() {
        ObjectNode request = JSON.createObjectNode().put("id", "the-body-id");
        ObjectNode input = request.putArray("inputs").addObject()
                .put("name", "x")
                .put("datatype", "FP32");
        input.putArray("shape").add(2).add(64);
        ArrayNode data = input.putArray("data");
        for (double pixel : new double[] {0.0, 16.0}) {
            for (int i = 0; i < 64; i++) {
                data.add(pixel);
            }
        }
        return request;
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
