/* An IoT sensor reporting to a Roost room, with the Eclipse Paho C client (libpaho-mqtt-dev).
 *
 * Publishes a temperature reading as a room message every --every seconds (simulated: a slow
 * wave around 21 C): a line for people in `body`, the number in `data`. QoS 1, so each reading
 * is stored once the broker acknowledges it. Stops after --count readings (0: never) or on
 * SIGTERM/SIGINT.
 *
 *   ROOST_USER=sensor-1 ROOST_TOKEN=<bot token> ./sensor --room lab --count 3
 */
#include <MQTTClient.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_signal(int signal_number) {
    (void)signal_number;
    stopping = 1;
}

static const char *option(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return fallback;
}

int main(int argc, char **argv) {
    const char *user = getenv("ROOST_USER");
    const char *token = getenv("ROOST_TOKEN");
    const char *host = getenv("ROOST_MQTT_HOST") ? getenv("ROOST_MQTT_HOST") : "127.0.0.1";
    const char *port = getenv("ROOST_MQTT_PORT") ? getenv("ROOST_MQTT_PORT") : "1883";
    const char *room = option(argc, argv, "--room", "lab");
    int count = atoi(option(argc, argv, "--count", "0"));
    double every = atof(option(argc, argv, "--every", "1"));
    if (!user || !token) {
        fprintf(stderr, "set ROOST_USER and ROOST_TOKEN\n");
        return 2;
    }

    char address[256], client_id[128], topic[128];
    snprintf(address, sizeof address, "tcp://%s:%s", host, port);
    snprintf(client_id, sizeof client_id, "%s-sensor", user);
    snprintf(topic, sizeof topic, "rooms/%s/messages", room);

    MQTTClient client;
    MQTTClient_create(&client, address, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    MQTTClient_connectOptions connect = MQTTClient_connectOptions_initializer;
    connect.username = user;
    connect.password = token;
    connect.keepAliveInterval = 30;
    connect.cleansession = 1;
    int rc = MQTTClient_connect(client, &connect);
    if (rc != MQTTCLIENT_SUCCESS) {
        /* 4: bad or expired token, 5: not authorized */
        fprintf(stderr, "connect refused: %d\n", rc);
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    for (int n = 1; !stopping && (count == 0 || n <= count); n++) {
        double celsius = 21.0 + 1.5 * sin(n / 10.0);
        char payload[128];
        int length = snprintf(payload, sizeof payload,
                              "{\"body\":\"temperature %.1f C\",\"data\":{\"celsius\":%.1f}}", celsius, celsius);
        MQTTClient_deliveryToken delivery;
        rc = MQTTClient_publish(client, topic, length, payload, 1, 0, &delivery);
        if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_waitForCompletion(client, delivery, 10000);
        if (rc != MQTTCLIENT_SUCCESS) {
            fprintf(stderr, "reading %d not acknowledged: %d\n", n, rc);
            break;
        }
        printf("sent reading %d: %.1f C\n", n, celsius);
        fflush(stdout);
        if (count == 0 || n < count) usleep((useconds_t)(every * 1e6));
    }
    MQTTClient_disconnect(client, 1000);
    MQTTClient_destroy(&client);
    return rc == MQTTCLIENT_SUCCESS ? 0 : 1;
}
