// A Roost room screen's state for Android, with the HiveMQ MQTT client
// (com.hivemq:hivemq-mqtt-client) and OkHttp + org.json for the HTTP API. Same behaviour as the
// tested python-bot: MQTT 5, username = user, password = access token, stamped envelopes, and
// gap recovery by `seq` from history after every (re)connect (PROTOCOL.md, sections 2 and 8).
package dev.roost.example

import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewModelScope
import com.hivemq.client.mqtt.datatypes.MqttQos
import com.hivemq.client.mqtt.mqtt5.Mqtt5AsyncClient
import com.hivemq.client.mqtt.mqtt5.Mqtt5Client
import com.hivemq.client.mqtt.mqtt5.exceptions.Mqtt5DisconnectException
import com.hivemq.client.mqtt.mqtt5.lifecycle.Mqtt5ClientDisconnectedContext
import com.hivemq.client.mqtt.mqtt5.message.disconnect.Mqtt5DisconnectReasonCode
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody.Companion.toRequestBody
import org.json.JSONObject
import java.util.UUID

data class Message(val seq: Long, val from: String, val body: String, val ts: Long)

/** Access and refresh tokens from POST /v1/auth/login; refreshed before the access token expires. */
class Tokens(private val http: OkHttpClient, private val baseUrl: String, var access: String, private var refresh: String) {
    /** POST /v1/auth/refresh: refresh tokens rotate, so both are replaced. */
    fun refresh() {
        val body = JSONObject().put("refresh_token", refresh).toString().toRequestBody(JSON)
        http.newCall(Request.Builder().url("$baseUrl/v1/auth/refresh").post(body).build()).execute().use { response ->
            check(response.isSuccessful) { "refresh failed: ${response.code}" }
            val pair = JSONObject(response.body!!.string())
            access = pair.getString("access_token")
            refresh = pair.getString("refresh_token")
        }
    }
}

class RoomViewModel(
    private val user: String,
    private val room: String,
    private val tokens: Tokens,
    private val baseUrl: String,
    mqttHost: String,
    mqttPort: Int,
    deviceId: String,
    private val http: OkHttpClient = OkHttpClient(),
) : ViewModel() {
    private val topic = "rooms/$room/messages"
    private val shown = sortedMapOf<Long, Message>()
    private val _messages = MutableStateFlow<List<Message>>(emptyList())
    val messages: StateFlow<List<Message>> = _messages

    private val client: Mqtt5AsyncClient = Mqtt5Client.builder()
        .identifier(deviceId) // one stable id per device: it names the device in presence
        .serverHost(mqttHost)
        .serverPort(mqttPort)
        .automaticReconnectWithDefaultConfig()
        // every (re)connect presents the current access token, refreshed when the server said it expired
        .simpleAuth().username(user).password(tokens.access.toByteArray()).applySimpleAuth()
        .addDisconnectedListener { generic ->
            val context = generic as Mqtt5ClientDisconnectedContext
            val reason = (context.cause as? Mqtt5DisconnectException)?.mqttMessage?.reasonCode
            if (reason == Mqtt5DisconnectReasonCode.MAXIMUM_CONNECT_TIME) tokens.refresh() // 0xA0: token expired
            context.reconnector.connectWith().simpleAuth()
                .username(user).password(tokens.access.toByteArray()).applySimpleAuth().applyConnect()
        }
        .addConnectedListener { subscribeAndRecover() }
        .buildAsync()

    fun start() {
        client.connectWith().cleanStart(false).sessionExpiryInterval(3600).send()
    }

    fun send(body: String) {
        // the client's id makes a re-send after a reconnect idempotent
        val payload = JSONObject().put("id", UUID.randomUUID().toString()).put("body", body)
        client.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE).payload(payload.toString().toByteArray()).send()
    }

    private fun subscribeAndRecover() {
        client.subscribeWith().topicFilter(topic).qos(MqttQos.AT_LEAST_ONCE)
            .callback { publish -> show(envelope(JSONObject(String(publish.payloadAsBytes)))) }
            .send()
            .thenAccept { viewModelScope.launch { recoverGap() } }
    }

    /** GET /v1/rooms/{room}/messages?after=<highest seq shown>, page by page, oldest first. */
    private suspend fun recoverGap() = withContext(Dispatchers.IO) {
        while (true) {
            val after = synchronized(shown) { if (shown.isEmpty()) 0L else shown.lastKey() }
            val request = Request.Builder()
                .url("$baseUrl/v1/rooms/$room/messages?after=$after&limit=500")
                .header("Authorization", "Bearer ${tokens.access}")
                .build()
            val page = http.newCall(request).execute().use { JSONObject(it.body!!.string()).getJSONArray("messages") }
            for (i in 0 until page.length()) show(envelope(page.getJSONObject(i)))
            if (page.length() < 500) break
        }
    }

    private fun envelope(json: JSONObject) =
        Message(json.getLong("seq"), json.getString("from"), json.getString("body"), json.getLong("ts"))

    /** Live and recovered messages merge by `seq`: each is shown once, in order. */
    private fun show(message: Message) {
        synchronized(shown) {
            shown[message.seq] = message
            _messages.value = shown.values.toList()
        }
    }

    override fun onCleared() {
        client.disconnect()
    }
}

private val JSON = "application/json".toMediaType()
