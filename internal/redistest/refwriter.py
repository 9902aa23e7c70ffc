#!/usr/bin/python3
"""Reference registry writer for regdns integration tests.

The classes below are copied from seed/redis-service-discovery.md
(ServiceRegistry.register/deregister/heartbeat and HealthChecker.check_instance)
with only the parts these commands need, so the Redis command sequences are
exactly the ones real services send: MULTI/EXEC pipelines, SETEX, SADD, SREM,
PUBLISH, GET. Do not "improve" them: regdns must read what they write.

Usage (run with Debian's /usr/bin/python3 and python3-redis):
  refwriter.py URL register SERVICE HOST PORT METADATA_JSON [TTL]  -> prints id
  refwriter.py URL deregister SERVICE ID
  refwriter.py URL heartbeat SERVICE ID [TTL]                        -> true/false
  refwriter.py URL health SERVICE ID STATUS [INTERVAL]
Exit status 3 means python3-redis is missing.
"""

import argparse
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, asdict
from enum import Enum
from typing import Any, Dict, Optional

try:
    import redis
except ImportError as exc:  # the Go side turns exit 3 into an install hint
    print(f"refwriter: cannot import redis ({exc}); "
          "run scripts/install-test-deps.sh", file=sys.stderr)
    sys.exit(3)

logger = logging.getLogger(__name__)


# --- copied from the seed: ServiceInstance / ServiceRegistry -----------------

@dataclass
class ServiceInstance:
    service_name: str
    instance_id: str
    host: str
    port: int
    metadata: Dict[str, Any]
    registered_at: float
    last_heartbeat: float


class ServiceRegistry:
    def __init__(self, redis_client: redis.Redis, ttl: int = 30):
        self.redis = redis_client
        self.ttl = ttl  # Time-to-live for service registration

    def _service_key(self, service_name: str) -> str:
        return f"services:{service_name}"

    def _instance_key(self, service_name: str, instance_id: str) -> str:
        return f"services:{service_name}:instances:{instance_id}"

    def register(self, service_name: str, host: str, port: int,
                 metadata: Optional[Dict[str, Any]] = None) -> str:
        """Register a service instance."""
        instance_id = str(uuid.uuid4())
        now = time.time()

        instance = ServiceInstance(
            service_name=service_name,
            instance_id=instance_id,
            host=host,
            port=port,
            metadata=metadata or {},
            registered_at=now,
            last_heartbeat=now
        )

        instance_key = self._instance_key(service_name, instance_id)
        service_key = self._service_key(service_name)

        pipe = self.redis.pipeline()

        # Store instance data with TTL
        pipe.setex(instance_key, self.ttl, json.dumps(asdict(instance)))

        # Add to service set
        pipe.sadd(service_key, instance_id)

        # Publish registration event
        pipe.publish(
            f"services:{service_name}:events",
            json.dumps({"event": "registered", "instance_id": instance_id})
        )

        pipe.execute()

        logger.info(f"Registered {service_name} instance: {instance_id}")
        return instance_id

    def deregister(self, service_name: str, instance_id: str):
        """Deregister a service instance."""
        instance_key = self._instance_key(service_name, instance_id)
        service_key = self._service_key(service_name)

        pipe = self.redis.pipeline()
        pipe.delete(instance_key)
        pipe.srem(service_key, instance_id)
        pipe.publish(
            f"services:{service_name}:events",
            json.dumps({"event": "deregistered", "instance_id": instance_id})
        )
        pipe.execute()

        logger.info(f"Deregistered {service_name} instance: {instance_id}")

    def heartbeat(self, service_name: str, instance_id: str) -> bool:
        """Send heartbeat to keep registration alive."""
        instance_key = self._instance_key(service_name, instance_id)

        # Get current data
        data = self.redis.get(instance_key)
        if not data:
            return False

        instance_data = json.loads(data)
        instance_data["last_heartbeat"] = time.time()

        # Update with new TTL
        self.redis.setex(instance_key, self.ttl, json.dumps(instance_data))

        return True


# --- copied from the seed: HealthStatus / HealthChecker.check_instance -------

class HealthStatus(Enum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class HealthChecker:
    def __init__(self, redis_client: redis.Redis,
                 check_interval: int = 10):
        self.redis = redis_client
        self.registry = ServiceRegistry(redis_client)
        self.check_interval = check_interval
        self._custom_checks = {}

    def register_check(self, service_name, check_func):
        """Register a custom health check for a service."""
        self._custom_checks[service_name] = check_func

    def _health_key(self, service_name: str, instance_id: str) -> str:
        return f"health:{service_name}:{instance_id}"

    def check_instance(self, instance: ServiceInstance) -> HealthStatus:
        """Check health of a single instance."""
        service_name = instance.service_name

        # The seed falls back to an HTTP check; here a custom check is always
        # registered (see cmd_health), so that branch is left out.
        check_func = self._custom_checks[service_name]

        try:
            is_healthy = check_func(instance)
            status = HealthStatus.HEALTHY if is_healthy else HealthStatus.UNHEALTHY
        except Exception as e:
            logger.error(f"Health check error for {instance.instance_id}: {e}")
            status = HealthStatus.UNKNOWN

        # Store health status
        health_key = self._health_key(service_name, instance.instance_id)
        self.redis.setex(
            health_key,
            self.check_interval * 3,
            json.dumps({
                "status": status.value,
                "checked_at": time.time()
            })
        )

        return status


# --- command line ------------------------------------------------------------

def cmd_register(r, a):
    metadata = json.loads(a.metadata)
    print(ServiceRegistry(r, a.ttl).register(a.service, a.host, a.port, metadata))


def cmd_deregister(r, a):
    ServiceRegistry(r).deregister(a.service, a.id)


def cmd_heartbeat(r, a):
    print("true" if ServiceRegistry(r, a.ttl).heartbeat(a.service, a.id) else "false")


def cmd_health(r, a):
    wanted = HealthStatus(a.status)

    # Drive the real check_instance with a check whose outcome yields the
    # wanted status: True -> healthy, False -> unhealthy, raise -> unknown.
    def check(_instance):
        if wanted is HealthStatus.UNKNOWN:
            raise RuntimeError("refwriter: status forced to unknown")
        return wanted is HealthStatus.HEALTHY

    checker = HealthChecker(r, a.interval)
    checker.register_check(a.service, check)
    # check_instance only reads service_name and instance_id.
    instance = ServiceInstance(a.service, a.id, "", 0, {}, 0.0, 0.0)
    got = checker.check_instance(instance)
    if got is not wanted:
        sys.exit(f"refwriter: wrote {got.value}, wanted {wanted.value}")


def main(argv):
    p = argparse.ArgumentParser(prog="refwriter.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("register")
    s.add_argument("service")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("metadata", help="JSON object")
    s.add_argument("ttl", type=int, nargs="?", default=30)
    s.set_defaults(func=cmd_register)

    s = sub.add_parser("deregister")
    s.add_argument("service")
    s.add_argument("id")
    s.set_defaults(func=cmd_deregister)

    s = sub.add_parser("heartbeat")
    s.add_argument("service")
    s.add_argument("id")
    s.add_argument("ttl", type=int, nargs="?", default=30)
    s.set_defaults(func=cmd_heartbeat)

    s = sub.add_parser("health")
    s.add_argument("service")
    s.add_argument("id")
    s.add_argument("status", choices=[h.value for h in HealthStatus])
    s.add_argument("interval", type=int, nargs="?", default=10)
    s.set_defaults(func=cmd_health)

    a = p.parse_args(argv)
    r = redis.Redis.from_url(a.url)
    try:
        a.func(r, a)
    finally:
        r.close()


if __name__ == "__main__":
    main(sys.argv[1:])
