// Reads a topic as a Java team would: kafka-clients with the CloudEvents SDK's
// CloudEventDeserializer (it detects structured or binary mode by itself).
// Usage: CloudEventsReader <bootstrap> <topic> <expected records> <timeout seconds>
// Prints one JSON line per record: the event's attributes and data, or the
// error the deserializer raised for it.

import com.fasterxml.jackson.databind.ObjectMapper;
import io.cloudevents.CloudEvent;
import io.cloudevents.kafka.CloudEventDeserializer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.serialization.StringDeserializer;

public final class CloudEventsReader {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String topic = args[1];
    int expected = Integer.parseInt(args[2]);
    long deadline = System.currentTimeMillis() + Long.parseLong(args[3]) * 1000;
    ObjectMapper json = new ObjectMapper();

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    props.put(
        ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, CloudEventDeserializer.class.getName());

    int seen = 0;
    try (KafkaConsumer<String, CloudEvent> consumer = new KafkaConsumer<>(props)) {
      List<TopicPartition> partitions = new ArrayList<>();
      for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
        partitions.add(new TopicPartition(topic, info.partition()));
      }
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      while (seen < expected && System.currentTimeMillis() < deadline) {
        try {
          for (ConsumerRecord<String, CloudEvent> record : consumer.poll(Duration.ofMillis(200))) {
            CloudEvent event = record.value();
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("partition", record.partition());
            line.put("offset", record.offset());
            line.put("key", record.key());
            line.put("specversion", event.getSpecVersion().toString());
            line.put("id", event.getId());
            line.put("source", event.getSource().toString());
            line.put("type", event.getType());
            line.put("subject", event.getSubject());
            line.put("time", event.getTime() == null ? null : event.getTime().toString());
            line.put("datacontenttype", event.getDataContentType());
            line.put(
                "dataschema", event.getDataSchema() == null ? null : event.getDataSchema().toString());
            line.put(
                "data", event.getData() == null ? null : json.readTree(event.getData().toBytes()));
            System.out.println(json.writeValueAsString(line));
            seen++;
          }
        } catch (RecordDeserializationException e) {
          Map<String, Object> line = new LinkedHashMap<>();
          line.put("partition", e.topicPartition().partition());
          line.put("offset", e.offset());
          line.put("error", String.valueOf(e.getCause()));
          System.out.println(json.writeValueAsString(line));
          consumer.seek(e.topicPartition(), e.offset() + 1);
          seen++;
        }
      }
    }
    System.out.flush();
  }
}
