-- NoOfImages was `int?` in the old DTO (issue 13: the help page's sample numbering and the
-- reference server show it): a service line without it is "not given", not 0. Lines stored
-- before keep their 0; new ones hold NULL when the sender left it out.
ALTER TABLE order_services ALTER COLUMN no_of_images DROP NOT NULL;
ALTER TABLE order_services ALTER COLUMN no_of_images DROP DEFAULT;
