"""The recommend service's topics, looked up in the catalogue (no topic name is spelled here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eventkit.catalogue import Catalogue, TopicSpec
from eventkit.events import (
    CustomerRecommendationsUpdated,
    OrderPlaced,
    PopularProductsUpdated,
    RecommendationRefreshRequested,
    RecommendationsUpdated,
)

SERVICE = "recommend"
TABLES = ("co_purchase", "popularity", "customer_recent", "seen_orders")


@dataclass(frozen=True)
class Topic:
    """A catalogue topic and the name it is used under (the same, except in benchmarks)."""

    spec: TopicSpec
    name: str


@dataclass(frozen=True)
class RecommendTopics:
    orders: Topic
    product_recs: Topic
    customer_recs: Topic
    popular: Topic
    refresh: Topic
    changelogs: Mapping[str, Topic]  # table name -> its changelog topic

    @property
    def caches(self) -> tuple[Topic, ...]:
        return (self.product_recs, self.customer_recs, self.popular)

    def for_record(self, record: str) -> Topic:
        for topic in (self.product_recs, self.customer_recs, self.popular, self.refresh):
            if topic.spec.value == record:
                return topic
        raise KeyError(record)

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue, renamed: Mapping[str, str] | None = None) -> RecommendTopics:
        renamed = renamed or {}

        def topic(spec: TopicSpec) -> Topic:
            return Topic(spec, renamed.get(spec.name, spec.name))

        changelogs = {
            spec.value: topic(spec)
            for spec in catalogue.produced_by(SERVICE)
            if spec.value_format == "faust-json" and spec.value in TABLES
        }
        missing = set(TABLES) - set(changelogs)
        if missing:
            raise KeyError(f"the catalogue declares no changelog topic for table(s) {sorted(missing)}")
        return cls(
            orders=topic(catalogue.topic_for(OrderPlaced.RECORD)),
            product_recs=topic(catalogue.topic_for(RecommendationsUpdated.RECORD)),
            customer_recs=topic(catalogue.topic_for(CustomerRecommendationsUpdated.RECORD)),
            popular=topic(catalogue.topic_for(PopularProductsUpdated.RECORD)),
            refresh=topic(catalogue.topic_for(RecommendationRefreshRequested.RECORD)),
            changelogs=changelogs,
        )
